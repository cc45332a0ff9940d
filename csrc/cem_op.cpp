// torch.ops.dga_fast.{axis_project, axis_cem_assign, axis_cem_iterate}: the points' coordinates along their
// component's axis, one classification-EM step of the split test, and up to `iters` of them with the class
// parameters in between (core/cem_core.h), on CPU tensors, the groups in parallel (at::parallel_for). Inputs as the reference's (mixture/axis_split.py,
// cem_assign): float64 projections and class parameters, int64 components and classes.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include <vector>

#include "core/cem_core.h"
#include "op_checks.h"

namespace {

using dga_checks::check_cpu_float;
using dga_checks::check_dtype;
using dga_checks::check_labels;
using dga_checks::check_like;

using Named = std::pair<const at::Tensor*, const char*>;

// t [G, n] float64 on the CPU (for the op `op`), and the int64 classes of its points, each [G, n] on t's device
void check_points(const at::Tensor& t, const char* op, std::initializer_list<Named> classes) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "t must be a CPU tensor (", op, "), got ", t.device());
  check_dtype(t, at::kDouble, "t");
  TORCH_CHECK_VALUE(t.dim() == 2, "t must be [G, n], got ", t.sizes());
  for (const auto& [c, name] : classes) check_like(*c, name, t, "t", at::kLong, {t.size(0), t.size(1)}, "[G, n]");
}

// t [G, n], comp [G, n], prev [G, n], base [G, K, m], mean [G, K, m], var [G, K]
//   -> cls [G, n], changed [G], cnt [G, K, m], s1 [G, K, m], s2 [G, K, m]
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> axis_cem_assign(
    const at::Tensor& t_in, const at::Tensor& comp_in, const at::Tensor& prev_in, const at::Tensor& base_in,
    const at::Tensor& mean_in, const at::Tensor& var_in) {
  check_points(t_in, "axis_cem_assign", {{&comp_in, "comp"}, {&prev_in, "prev"}});
  TORCH_CHECK_VALUE(base_in.dim() == 3 && base_in.size(2) >= 1, "base must be [G, K, m] with m >= 1, got ",
                    base_in.sizes());
  const int64_t G = t_in.size(0), n = t_in.size(1), K = base_in.size(1), m = base_in.size(2);
  for (const auto& [x, name] : {Named{&base_in, "base"}, Named{&mean_in, "mean"}})
    check_like(*x, name, t_in, "t", at::kDouble, {G, K, m}, "[G, K, m]");
  check_like(var_in, "var", t_in, "t", at::kDouble, {G, K}, "[G, K]");
  auto t = t_in.contiguous(), comp = comp_in.contiguous(), prev = prev_in.contiguous();
  auto base = base_in.contiguous(), mean = mean_in.contiguous(), var = var_in.contiguous();
  check_labels(comp, K, "comp");
  auto cls = at::empty({G, n}, comp.options());
  auto changed = at::empty({G}, comp.options());
  auto cnt = at::zeros({G, K, m}, t.options()), s1 = at::zeros({G, K, m}, t.options());
  auto s2 = at::zeros({G, K, m}, t.options());
  at::parallel_for(0, G, 1, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) {
      const int64_t rows = g * n, par_off = g * K * m;
      changed.data_ptr<int64_t>()[g] = dga_core::cem_assign(
          t.data_ptr<double>() + rows, comp.data_ptr<int64_t>() + rows, prev.data_ptr<int64_t>() + rows, n, m,
          base.data_ptr<double>() + par_off, mean.data_ptr<double>() + par_off, var.data_ptr<double>() + g * K,
          cls.data_ptr<int64_t>() + rows, cnt.data_ptr<double>() + par_off, s1.data_ptr<double>() + par_off,
          s2.data_ptr<double>() + par_off);
    }
  });
  return {cls, changed, cnt, s1, s2};
}

// t [G, n], comp [G, n], cls [G, n], cnt / s1 / s2 [G, K, m], v_floor [G, K], iters
//   -> cls [G, n], cnt, s1, s2 [G, K, m] after up to `iters` CEM steps per group (core/cem_core.h, cem_iterate)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> axis_cem_iterate(
    const at::Tensor& t_in, const at::Tensor& comp_in, const at::Tensor& cls_in, const at::Tensor& cnt_in,
    const at::Tensor& s1_in, const at::Tensor& s2_in, const at::Tensor& vf_in, int64_t iters) {
  check_points(t_in, "axis_cem_iterate", {{&comp_in, "comp"}, {&cls_in, "cls"}});
  TORCH_CHECK_VALUE(cnt_in.dim() == 3 && cnt_in.size(2) >= 1, "cnt must be [G, K, m] with m >= 1, got ",
                    cnt_in.sizes());
  TORCH_CHECK_VALUE(iters >= 0, "iters must be >= 0, got ", iters);
  const int64_t G = t_in.size(0), n = t_in.size(1), K = cnt_in.size(1), m = cnt_in.size(2);
  for (const auto& [x, name] : {Named{&cnt_in, "cnt"}, Named{&s1_in, "s1"}, Named{&s2_in, "s2"}})
    check_like(*x, name, t_in, "t", at::kDouble, {G, K, m}, "[G, K, m]");
  check_like(vf_in, "v_floor", t_in, "t", at::kDouble, {G, K}, "[G, K]");
  auto t = t_in.contiguous(), comp = comp_in.contiguous(), vf = vf_in.contiguous();
  check_labels(comp, K, "comp");
  auto cls = cls_in.contiguous().clone(), cnt = cnt_in.contiguous().clone();
  auto s1 = s1_in.contiguous().clone(), s2 = s2_in.contiguous().clone();
  at::parallel_for(0, G, 1, [&](int64_t b, int64_t e) {
    std::vector<double> scratch(static_cast<size_t>(5 * K * m + K));
    std::vector<int64_t> next(static_cast<size_t>(n));
    for (int64_t g = b; g < e; ++g) {
      const int64_t rows = g * n, par_off = g * K * m;
      dga_core::cem_iterate(t.data_ptr<double>() + rows, comp.data_ptr<int64_t>() + rows, n, K, m,
                            vf.data_ptr<double>() + g * K, static_cast<int>(iters), cls.data_ptr<int64_t>() + rows,
                            cnt.data_ptr<double>() + par_off, s1.data_ptr<double>() + par_off,
                            s2.data_ptr<double>() + par_off, scratch.data(), next.data());
    }
  });
  return {cls, cnt, s1, s2};
}

// x [G, n, D], labels [G, n], means [G, K, D], q [G, K, D] (x's dtype) -> t [G, n] float64: t = q_kᵀ(x − μ_k) of
// every point (k its label), summed over d in order in double (core/cem_core.h, axis_project)
at::Tensor axis_project(const at::Tensor& x_in, const at::Tensor& labels_in, const at::Tensor& means_in,
                        const at::Tensor& q_in) {
  check_cpu_float(x_in, "x", "axis_project");
  TORCH_CHECK_VALUE(x_in.dim() == 3, "x must be [G, n, D], got ", x_in.sizes());
  TORCH_CHECK_VALUE(means_in.dim() == 3 && means_in.size(1) >= 1, "means must be [G, K, D] with K >= 1, got ",
                    means_in.sizes());
  const int64_t G = x_in.size(0), n = x_in.size(1), D = x_in.size(2), K = means_in.size(1);
  check_like(labels_in, "labels", x_in, "x", at::kLong, {G, n}, "[G, n]");
  for (const auto& [t, name] : {Named{&means_in, "means"}, Named{&q_in, "q"}})
    check_like(*t, name, x_in, "x", x_in.scalar_type(), {G, K, D}, "[G, K, D]");
  auto x = x_in.contiguous(), labels = labels_in.contiguous(), means = means_in.contiguous(), q = q_in.contiguous();
  check_labels(labels, K, "labels");
  auto t = at::empty({G, n}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "axis_project", [&] {
    at::parallel_for(0, G, 1, [&](int64_t b, int64_t e) {
      for (int64_t g = b; g < e; ++g)
        dga_core::axis_project(x.data_ptr<scalar_t>() + g * n * D, labels.data_ptr<int64_t>() + g * n, n, D,
                               means.data_ptr<scalar_t>() + g * K * D, q.data_ptr<scalar_t>() + g * K * D,
                               t.data_ptr<double>() + g * n);
    });
  });
  return t;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dga_fast, m) {
  m.def("axis_project(Tensor x, Tensor labels, Tensor means, Tensor q) -> Tensor");
  m.def("axis_cem_assign(Tensor t, Tensor comp, Tensor prev, Tensor base, Tensor mean, Tensor var) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("axis_cem_iterate(Tensor t, Tensor comp, Tensor cls, Tensor cnt, Tensor s1, Tensor s2, Tensor v_floor, "
        "int iters) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dga_fast, CPU, m) {
  m.impl("axis_project", &axis_project);
  m.impl("axis_cem_assign", &axis_cem_assign);
  m.impl("axis_cem_iterate", &axis_cem_iterate);
}
