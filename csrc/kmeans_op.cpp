// torch.ops.dga_fast.kmeans_assign: one Lloyd step (core/kmeans_core.h) on CPU tensors, float32 or float64, in
// parallel over groups × fixed row chunks (op_chunks.h), the chunks' counts and sums added in order; and
// torch.ops.dga_fast.kmeans_lloyd: the whole Lloyd loop of every group in one call, the groups in parallel.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include "core/kmeans_core.h"
#include "op_checks.h"
#include "op_chunks.h"

namespace {

using dga_checks::check_device_dtype;
using dga_checks::check_points;
using dga_chunks::add_chunks;
using dga_chunks::chunks;
using dga_chunks::kRowChunk;

void check_inputs(const at::Tensor& x_in, const at::Tensor& c_in, const char* op) {
  check_points(x_in, op);
  check_device_dtype(c_in, "centers", x_in, "x");
  TORCH_CHECK_VALUE(c_in.dim() == 3 && c_in.size(0) == x_in.size(0) && c_in.size(1) >= 1 &&
                        c_in.size(2) == x_in.size(2),
                    "centers must be [G, K, D] with K >= 1 and G, D as x ", x_in.sizes(), ", got ", c_in.sizes());
}

// x [G, N, D], centers [G, K, D] -> labels [G, N] int64, counts [G, K], sums [G, K, D] (x's dtype)
std::tuple<at::Tensor, at::Tensor, at::Tensor> kmeans_assign(const at::Tensor& x_in, const at::Tensor& c_in) {
  check_inputs(x_in, c_in, "kmeans_assign");
  auto x = x_in.contiguous();
  const int64_t G = x.size(0), N = x.size(1), D = x.size(2), K = c_in.size(1), C = chunks(N);
  const int64_t Kp = dga_core::kmeans_padded(K);
  // the centres transposed to [G, D, Kp] in double, padding columns 0 (never chosen: only k < K are compared)
  auto ct = at::zeros({G, D, Kp}, x.options().dtype(at::kDouble));
  ct.narrow(2, 0, K).copy_(c_in.transpose(1, 2));
  auto labels = at::empty({G, N}, x.options().dtype(at::kLong));
  auto dbl = x.options().dtype(at::kDouble);
  auto counts = at::zeros({G, C, K}, dbl), sums = at::zeros({G, C, K, D}, dbl);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kmeans_assign", [&] {
    at::parallel_for(0, G * C, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t g = t / C, r0 = (t % C) * kRowChunk;
        dga_core::kmeans_assign(x.data_ptr<scalar_t>() + g * N * D, r0, std::min(N, r0 + kRowChunk), D,
                                ct.data_ptr<double>() + g * D * Kp, K, labels.data_ptr<int64_t>() + g * N,
                                counts.data_ptr<double>() + t * K, sums.data_ptr<double>() + t * K * D);
      }
    });
  });
  return {labels, add_chunks(counts, x.scalar_type()), add_chunks(sums, x.scalar_type())};
}

// x [G, N, D], centers [G, K, D], max_iter -> labels [G, N] int64, centers [G, K, D]: Lloyd per group
// (core/kmeans_core.h, kmeans_lloyd), the groups in parallel
std::tuple<at::Tensor, at::Tensor> kmeans_lloyd(const at::Tensor& x_in, const at::Tensor& c_in, int64_t max_iter) {
  check_inputs(x_in, c_in, "kmeans_lloyd");
  TORCH_CHECK_VALUE(max_iter >= 0, "max_iter must be >= 0, got ", max_iter);
  auto x = x_in.contiguous();
  auto centers = c_in.contiguous().clone();
  const int64_t G = x.size(0), N = x.size(1), D = x.size(2), K = centers.size(1);
  auto labels = at::empty({G, N}, x.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "kmeans_lloyd", [&] {
    at::parallel_for(0, G, 1, [&](int64_t b, int64_t e) {
      for (int64_t g = b; g < e; ++g)
        dga_core::kmeans_lloyd(x.data_ptr<scalar_t>() + g * N * D, N, D, centers.data_ptr<scalar_t>() + g * K * D, K,
                               static_cast<int>(max_iter), kRowChunk, labels.data_ptr<int64_t>() + g * N);
    });
  });
  return {labels, centers};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dga_fast, m) {
  m.def("kmeans_assign(Tensor x, Tensor centers) -> (Tensor, Tensor, Tensor)");
  m.def("kmeans_lloyd(Tensor x, Tensor centers, int max_iter) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dga_fast, CPU, m) {
  m.impl("kmeans_assign", &kmeans_assign);
  m.impl("kmeans_lloyd", &kmeans_lloyd);
}
