// torch.ops.dga_fast.group_moments: the normaliser's statistics of every group (core/moments_core.h) on CPU
// tensors, float32 or float64, the groups in parallel (at::parallel_for).
#include <ATen/ATen.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include <vector>

#include "core/moments_core.h"
#include "op_checks.h"

namespace {

// x [G, N, D] -> shift [G, D], dev2 [G], sq [G] (float64): see moments_core.h
std::tuple<at::Tensor, at::Tensor, at::Tensor> group_moments(const at::Tensor& x_in) {
  dga_checks::check_points(x_in, "group_moments");
  auto x = x_in.contiguous();
  const int64_t G = x.size(0), N = x.size(1), D = x.size(2);
  auto opts = x.options().dtype(at::kDouble);
  auto shift = at::empty({G, D}, opts), dev2 = at::empty({G}, opts), sq = at::empty({G}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_moments", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    at::parallel_for(0, G, 1, [&](int64_t b, int64_t e) {
      std::vector<double> acc(D);
      for (int64_t g = b; g < e; ++g)
        dga_core::group_moments(px + g * N * D, N, D, shift.data_ptr<double>() + g * D, dev2.data_ptr<double>() + g,
                                sq.data_ptr<double>() + g, acc.data());
    });
  });
  TORCH_CHECK_VALUE(N == 0 || (at::isfinite(shift).all().item<bool>() && at::isfinite(sq).all().item<bool>()),
                    "x contains NaN or Inf values (or values whose squares overflow)");
  return {shift, dev2, sq};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dga_fast, m) { m.def("group_moments(Tensor x) -> (Tensor, Tensor, Tensor)"); }

TORCH_LIBRARY_IMPL(dga_fast, CPU, m) { m.impl("group_moments", &group_moments); }
