// The fixed row chunks of the CPU ops whose sums must not depend on the thread count (csrc/mstep_op.cpp,
// csrc/kmeans_op.cpp): a group's rows are cut into chunks of kRowChunk rows, each chunk's sums are taken alone
// (in parallel over groups × chunks), and the chunks are then added in order.
#pragma once

#include <ATen/ATen.h>

#include "core/chunk_sums.h"

#include <algorithm>
#include <vector>

namespace dga_chunks {

// Rows per chunk: the unit of parallel work; fixed, so that the sums never depend on the thread count.
constexpr int64_t kRowChunk = 2048;

inline int64_t chunks(int64_t N) { return (N + kRowChunk - 1) / kRowChunk; }

// part [G, C, ...] (double) -> [G, ...] in `dtype`: each group's chunks added in order
inline at::Tensor add_chunks(const at::Tensor& part, at::ScalarType dtype) {
  const int64_t G = part.size(0), C = part.size(1), L = part.numel() / std::max<int64_t>(1, G * C);
  auto sizes = part.sizes().vec();
  sizes.erase(sizes.begin() + 1);
  auto out = at::empty(sizes, part.options());
  const double* p = part.data_ptr<double>();
  double* o = out.data_ptr<double>();
  for (int64_t g = 0; g < G; ++g) dga_core::add_chunks(p + g * C * L, C, L, o + g * L);
  return out.to(dtype);
}

}  // namespace dga_chunks
