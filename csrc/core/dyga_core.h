// Torch-free core of Dynamic Gaussian Anchoring's spread / split / filter steps (DESIGN §4), shared by the
// CPU and CUDA ops of dga_fast._C and unit-tested on its own (csrc/tests, ctest, ASan/UBSan).
//
// Every function works on one group (one latent unit) of K padded component slots, row-major plain arrays,
// and mirrors the PyTorch reference in dga_fast/reference/split_filter.py exactly (same slots, same order,
// ties broken by slot index). Errors are reported as a Status, never by crashing.
#pragma once

#include <cstdint>

namespace dga_core {

enum class Status : int {
  kOk = 0,
  kBadSize = 1,        // K, N or D out of range
  kBadLabel = 2,       // a hard label outside [0, K)
  kNullPointer = 3,
};

const char* status_message(Status s);

// Per component: number of hard-assigned points and their mean Euclidean distance to the component mean
// (0 for an empty component). x [N, D], labels [N], means [K, D] -> counts [K], spread [K].
Status mixture_spread(const float* x, const int64_t* labels, const float* means, int64_t N, int64_t K, int64_t D,
                      int64_t* counts, double* spread);

// The split plan of one group. A candidate is an active slot with spread > threshold and count >= min_count;
// a free slot is inactive with index < max_components. n = min(#candidates, #free, max(max_components -
// #active, 0)) candidates split, widest first (stable on slot index), into the lowest free slots.
// Outputs: src [K] (the slot each slot copies; itself unless it is a child), sign [K] (+1 parent, -1 child,
// 0 untouched) and the number of splits.
Status split_plan(const uint8_t* active, const double* spread, const int64_t* counts, int64_t K, double threshold,
                  int64_t max_components, double min_count, int64_t* src, int8_t* sign, int64_t* n_split);

// The filter plan of one group: keep = active & mass >= min_size; if nothing is kept, the heaviest slot
// (argmax of mass over active slots, -inf elsewhere; NaN counts as largest, as torch.argmax) is kept.
// Outputs: keep [K] in the new order and order [K], the stable partition of kept slots first.
Status filter_plan(const uint8_t* active, const double* mass, int64_t K, double min_size, uint8_t* keep,
                   int64_t* order);

}  // namespace dga_core
