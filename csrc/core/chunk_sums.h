// Torch-free: sums over fixed row chunks added in order (from 0.0, one chunk after the other), so that a sum
// never depends on how many threads computed the chunks. Used by the ops' chunk reduction (csrc/op_chunks.h) and
// by the loops that run a whole group in one task (core/kmeans_core.cpp).
#pragma once

#include <cstdint>

namespace dga_core {

// out [L] = Σ_c part[c, L], the chunks in order, rounded to T
template <typename T>
inline void add_chunks(const double* part, int64_t C, int64_t L, T* out) {
  for (int64_t l = 0; l < L; ++l) {
    double acc = 0.0;
    for (int64_t c = 0; c < C; ++c) acc += part[c * L + l];
    out[l] = static_cast<T>(acc);
  }
}

}  // namespace dga_core
