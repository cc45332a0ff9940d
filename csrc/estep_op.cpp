// torch.ops.dga_fast.hddc_estep_native: the fused HDDC E-step on CPU tensors (core/estep_core.h), float32 or
// float64, the groups' rows split into blocks run with at::parallel_for. Inputs as the Triton op's
// (dga_fast/ops/hddc_estep/custom_op.py): the state trimmed to its largest subspace dimension and its cost terms.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include <limits>
#include <utility>
#include <vector>

#include "core/estep_core.h"
#include "op_checks.h"

namespace {

using dga_checks::check_cpu_float;
using dga_checks::check_device_dtype;
using dga_checks::check_sizes;

constexpr int64_t kRowsPerTask = 16 * dga_core::kEstepTile;   // rows of one group per parallel task

void check_inputs(const at::Tensor& x, const at::Tensor& means, const at::Tensor& q, const at::Tensor& w,
                  const at::Tensor& inv_b, const at::Tensor& cst) {
  check_cpu_float(x, "x", "hddc_estep_native");
  const std::pair<const at::Tensor*, const char*> params[] = {
      {&means, "means"}, {&q, "components"}, {&w, "w"}, {&inv_b, "inv_b"}, {&cst, "const"}};
  for (const auto& [t, name] : params) {
    check_device_dtype(*t, name, x, "x");
  }
  TORCH_CHECK_VALUE(x.dim() == 3, "x must be [G, N, D], got ", x.sizes());
  TORCH_CHECK_VALUE(means.dim() == 3 && q.dim() == 4, "means and components must be [G, K, D] and "
                    "[G, K, D, DM], got ", means.sizes(), " and ", q.sizes());
  const int64_t G = x.size(0), D = x.size(2), K = means.size(1), DM = q.size(3);
  TORCH_CHECK_VALUE(K >= 1 && D >= 1, "need K >= 1 slots and D >= 1 dims, got means ", means.sizes());
  check_sizes(means, {G, K, D}, "means", "[G, K, D]");
  check_sizes(q, {G, K, D, DM}, "components", "[G, K, D, DM]");
  check_sizes(w, {G, K, DM}, "w", "[G, K, DM]");
  check_sizes(inv_b, {G, K}, "inv_b", "[G, K]");
  check_sizes(cst, {G, K}, "const", "[G, K]");
  TORCH_CHECK_VALUE(at::isfinite(means).all().item<bool>() && at::isfinite(q).all().item<bool>() &&
                    at::isfinite(w).all().item<bool>() && at::isfinite(inv_b).all().item<bool>(),
                    "means, components, w and inv_b must be finite");
  // const: finite for an active slot, +inf for an inactive one, and every group has an active slot
  TORCH_CHECK_VALUE(!(at::isnan(cst) | (cst == -std::numeric_limits<double>::infinity())).any().item<bool>(),
                    "const must be finite (active slot) or +inf (inactive slot)");
  TORCH_CHECK_VALUE(G == 0 || at::isfinite(cst).any(1).all().item<bool>(),
                    "every group needs an active slot (a finite const)");
}

template <typename T>
void run(const at::Tensor& x, const at::Tensor& means, const at::Tensor& q, const at::Tensor& w,
         const at::Tensor& inv_b, const at::Tensor& cst, at::Tensor& log_resp, at::Tensor& loglik) {
  const int64_t G = x.size(0), N = x.size(1), D = x.size(2), K = means.size(1), DM = q.size(3);
  const int64_t blocks = (N + kRowsPerTask - 1) / kRowsPerTask;
  at::parallel_for(0, G * blocks, 1, [&](int64_t b, int64_t e) {
    std::vector<T> scratch(dga_core::estep_scratch_size(D, K));
    for (int64_t task = b; task < e; ++task) {
      const int64_t g = task / blocks, r0 = (task % blocks) * kRowsPerTask;
      const dga_core::EstepGroup<T> grp{x.data_ptr<T>() + g * N * D, means.data_ptr<T>() + g * K * D,
                                        q.data_ptr<T>() + g * K * D * DM, w.data_ptr<T>() + g * K * DM,
                                        inv_b.data_ptr<T>() + g * K, cst.data_ptr<T>() + g * K, N, K, D, DM,
                                        log_resp.data_ptr<T>() + g * N * K, loglik.data_ptr<T>() + g * N};
      dga_core::estep_rows(grp, r0, std::min(N, r0 + kRowsPerTask), scratch.data());
    }
  });
}

std::tuple<at::Tensor, at::Tensor> hddc_estep_native(const at::Tensor& x_in,      // [G, N, D]
                                                     const at::Tensor& means_in,  // [G, K, D]
                                                     const at::Tensor& q_in,      // [G, K, D, DM]
                                                     const at::Tensor& w_in,      // [G, K, DM]
                                                     const at::Tensor& inv_b_in,  // [G, K]
                                                     const at::Tensor& cst_in) {  // [G, K]
  check_inputs(x_in, means_in, q_in, w_in, inv_b_in, cst_in);
  auto x = x_in.contiguous(), means = means_in.contiguous(), q = q_in.contiguous(), w = w_in.contiguous();
  auto inv_b = inv_b_in.contiguous(), cst = cst_in.contiguous();
  const int64_t G = x.size(0), N = x.size(1), K = means.size(1);
  auto log_resp = at::empty({G, N, K}, x.options());
  auto loglik = at::empty({G, N}, x.options());
  if (x.scalar_type() == at::kFloat)
    run<float>(x, means, q, w, inv_b, cst, log_resp, loglik);
  else
    run<double>(x, means, q, w, inv_b, cst, log_resp, loglik);
  // the parameters are finite (checked above): a non-finite log-likelihood comes from x
  TORCH_CHECK_VALUE(at::isfinite(loglik).all().item<bool>(),
                    "x contains NaN or Inf values (or values so large that the cost overflows)");
  return {log_resp, loglik};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dga_fast, m) {
  m.def("hddc_estep_native(Tensor x, Tensor means, Tensor components, Tensor w, Tensor inv_b, Tensor cst) "
        "-> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dga_fast, CPU, m) { m.impl("hddc_estep_native", &hddc_estep_native); }
