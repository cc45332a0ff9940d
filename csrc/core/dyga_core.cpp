#include "dyga_core.h"

#include <cmath>
#include <limits>
#include <vector>
#include <algorithm>

namespace dga_core {

const char* status_message(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kBadSize: return "a size (K, N or D) is out of range";
    case Status::kBadLabel: return "a hard label is outside [0, K)";
    case Status::kNullPointer: return "a null pointer was passed";
  }
  return "unknown status";
}

Status mixture_spread(const float* x, const int64_t* labels, const float* means, int64_t N, int64_t K, int64_t D,
                      int64_t* counts, double* spread) {
  if (N < 0 || K < 1 || D < 1) return Status::kBadSize;
  if ((N > 0 && (x == nullptr || labels == nullptr)) || means == nullptr || counts == nullptr ||
      spread == nullptr)
    return Status::kNullPointer;
  for (int64_t i = 0; i < N; ++i)
    if (labels[i] < 0 || labels[i] >= K) return Status::kBadLabel;
  std::vector<double> sums(static_cast<size_t>(K), 0.0);
  for (int64_t k = 0; k < K; ++k) counts[k] = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t k = labels[i];
    const float* xi = x + i * D;
    const float* mk = means + k * D;
    float sq = 0.0f;   // float32 distances, as the reference's norm (and vectorisable); sums in double
    for (int64_t d = 0; d < D; ++d) {
      const float z = xi[d] - mk[d];
      sq += z * z;
    }
    sums[static_cast<size_t>(k)] += std::sqrt(static_cast<double>(sq));
    counts[k] += 1;
  }
  for (int64_t k = 0; k < K; ++k)
    spread[k] = sums[static_cast<size_t>(k)] / static_cast<double>(std::max<int64_t>(counts[k], 1));
  return Status::kOk;
}

Status split_plan(const uint8_t* active, const double* spread, const int64_t* counts, int64_t K, double threshold,
                  int64_t max_components, double min_count, int64_t* src, int8_t* sign, int64_t* n_split) {
  if (K < 1) return Status::kBadSize;
  if (!active || !spread || !counts || !src || !sign || !n_split) return Status::kNullPointer;
  std::vector<int64_t> cand, free_slots;
  int64_t n_active = 0;
  for (int64_t k = 0; k < K; ++k) {
    src[k] = k;
    sign[k] = 0;
    if (active[k]) {
      ++n_active;
      if (spread[k] > threshold && static_cast<double>(counts[k]) >= min_count) cand.push_back(k);  // NaN: never
    } else if (k < max_components) {
      free_slots.push_back(k);
    }
  }
  // widest first, stable on slot index (the reference sorts -spread ascending, stable)
  std::stable_sort(cand.begin(), cand.end(), [&](int64_t a, int64_t b) { return spread[a] > spread[b]; });
  const int64_t room = std::max<int64_t>(max_components - n_active, 0);
  const int64_t n = std::min<int64_t>(std::min<int64_t>(static_cast<int64_t>(cand.size()),
                                                        static_cast<int64_t>(free_slots.size())), room);
  for (int64_t r = 0; r < n; ++r) {
    src[free_slots[static_cast<size_t>(r)]] = cand[static_cast<size_t>(r)];
    sign[cand[static_cast<size_t>(r)]] = 1;
    sign[free_slots[static_cast<size_t>(r)]] = -1;
  }
  *n_split = n;
  return Status::kOk;
}

Status filter_plan(const uint8_t* active, const double* mass, int64_t K, double min_size, uint8_t* keep,
                   int64_t* order) {
  if (K < 1) return Status::kBadSize;
  if (!active || !mass || !keep || !order) return Status::kNullPointer;
  std::vector<uint8_t> k0(static_cast<size_t>(K), 0);
  bool any = false;
  for (int64_t k = 0; k < K; ++k) {
    k0[static_cast<size_t>(k)] = (active[k] && mass[k] >= min_size) ? 1 : 0;
    any = any || k0[static_cast<size_t>(k)];
  }
  if (!any) {   // torch.argmax over where(active, mass, -inf): first maximum, NaN counts as the largest
    int64_t best = 0;
    double best_v = -std::numeric_limits<double>::infinity();
    bool best_nan = false;
    for (int64_t k = 0; k < K; ++k) {
      const double v = active[k] ? mass[k] : -std::numeric_limits<double>::infinity();
      if (best_nan) break;
      if (std::isnan(v)) { best = k; best_nan = true; break; }
      if (v > best_v) { best = k; best_v = v; }
    }
    k0[static_cast<size_t>(best)] = 1;
  }
  int64_t pos = 0;
  for (int64_t k = 0; k < K; ++k)
    if (k0[static_cast<size_t>(k)]) { order[pos] = k; keep[pos] = 1; ++pos; }
  for (int64_t k = 0; k < K; ++k)
    if (!k0[static_cast<size_t>(k)]) { order[pos] = k; keep[pos] = 0; ++pos; }
  return Status::kOk;
}

}  // namespace dga_core
