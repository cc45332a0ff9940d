// Torch-free core of Dynamic Gaussian Anchoring's spread / split / filter steps (DESIGN §4), shared by the
// CPU and CUDA ops of dga_fast._C and unit-tested on its own (csrc/tests, ctest, ASan/UBSan).
//
// Every function works on one group (one latent unit) of K padded component slots, row-major plain arrays,
// and mirrors the PyTorch reference in dga_fast/ops/plans/reference.py exactly (same slots, same order,
// ties broken by slot index). Errors are reported as a Status, never by crashing.
//
// The per-group plans and the point distance are inline and DGA_HD (host and device): the CUDA ops run the very
// same code, one thread per group, so the CPU and CUDA plans cannot drift apart. They use no heap and no
// standard algorithms (a candidate's rank is counted, O(K^2), K being a handful of slots).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DGA_HD __host__ __device__
#else
#define DGA_HD
#endif

namespace dga_core {

enum class Status : int {
  kOk = 0,
  kBadSize = 1,        // K, N or D out of range
  kBadLabel = 2,       // a hard label outside [0, K)
  kNullPointer = 3,
};

const char* status_message(Status s);

// Squared Euclidean distance of two D-vectors, accumulated in float32 in index order (as the reference's norm).
DGA_HD inline float sq_distance(const float* a, const float* b, int64_t D) {
  float sq = 0.0f;
  for (int64_t d = 0; d < D; ++d) {
    const float z = a[d] - b[d];
    sq += z * z;
  }
  return sq;
}

// Per component: number of hard-assigned points and their mean Euclidean distance to the component mean
// (0 for an empty component). x [N, D], labels [N], means [K, D] -> counts [K], spread [K].
Status mixture_spread(const float* x, const int64_t* labels, const float* means, int64_t N, int64_t K, int64_t D,
                      int64_t* counts, double* spread);

// The split plan of one group. A candidate is an active slot with spread > threshold and count >= min_count
// (a NaN spread never is one); a free slot is inactive with index < max_components. n = min(#candidates, #free,
// max(max_components - #active, 0)) candidates split, widest first (stable on slot index), into the lowest free
// slots. Outputs: src [K] (the slot each slot copies; itself unless it is a child), sign [K] (+1 parent, -1
// child, 0 untouched) and the number of splits.
DGA_HD inline Status split_plan(const uint8_t* active, const double* spread, const int64_t* counts, int64_t K,
                                double threshold, int64_t max_components, double min_count, int64_t* src,
                                int8_t* sign, int64_t* n_split) {
  if (K < 1) return Status::kBadSize;
  if (!active || !spread || !counts || !src || !sign || !n_split) return Status::kNullPointer;
  auto is_cand = [&](int64_t k) {
    return active[k] && spread[k] > threshold && static_cast<double>(counts[k]) >= min_count;
  };
  int64_t n_active = 0, n_cand = 0, n_free = 0;
  for (int64_t k = 0; k < K; ++k) {
    src[k] = k;
    sign[k] = 0;
    if (active[k]) {
      ++n_active;
      n_cand += is_cand(k) ? 1 : 0;
    } else if (k < max_components) {
      ++n_free;
    }
  }
  int64_t room = max_components - n_active;
  room = room > 0 ? room : 0;
  int64_t n = n_cand < n_free ? n_cand : n_free;
  n = n < room ? n : room;
  for (int64_t c = 0; c < K && n > 0; ++c) {
    if (!is_cand(c)) continue;
    int64_t rank = 0;   // widest first, ties by slot index (the reference's stable sort of -spread)
    for (int64_t j = 0; j < K; ++j)
      if (j != c && is_cand(j) && (spread[j] > spread[c] || (spread[j] == spread[c] && j < c))) ++rank;
    if (rank >= n) continue;
    int64_t f = 0, seen = -1;   // the rank-th free slot
    for (; f < K; ++f)
      if (!active[f] && f < max_components && ++seen == rank) break;
    src[f] = c;
    sign[c] = 1;
    sign[f] = -1;
  }
  *n_split = n;
  return Status::kOk;
}

// The filter plan of one group: keep = active & mass >= min_size; if nothing is kept, the heaviest slot
// (argmax of mass over active slots, -inf elsewhere; the first maximum, a NaN counting as largest, as
// torch.argmax) is kept. Outputs: keep [K] in the new order and order [K], the stable partition of kept slots
// first.
DGA_HD inline Status filter_plan(const uint8_t* active, const double* mass, int64_t K, double min_size,
                                 uint8_t* keep, int64_t* order) {
  if (K < 1) return Status::kBadSize;
  if (!active || !mass || !keep || !order) return Status::kNullPointer;
  bool any = false;
  for (int64_t k = 0; k < K; ++k) any = any || (active[k] && mass[k] >= min_size);
  int64_t forced = -1;   // the slot kept when no slot passes
  if (!any) {
    auto value = [&](int64_t k) { return active[k] ? mass[k] : -HUGE_VAL; };
    forced = 0;
    double best = value(0);
    for (int64_t k = 1; k < K && best == best; ++k) {   // stop at the first NaN
      const double v = value(k);
      if (v != v || v > best) {
        forced = k;
        best = v;
      }
    }
  }
  auto kept = [&](int64_t k) { return (active[k] && mass[k] >= min_size) || k == forced; };
  int64_t pos = 0;
  for (int64_t k = 0; k < K; ++k)
    if (kept(k)) { order[pos] = k; keep[pos] = 1; ++pos; }
  for (int64_t k = 0; k < K; ++k)
    if (!kept(k)) { order[pos] = k; keep[pos] = 0; ++pos; }
  return Status::kOk;
}

}  // namespace dga_core
