// dga_fast._C: the ops over the torch-free core (core/dyga_core.h), registered as torch.ops.dga_fast.* for CPU
// tensors and, in a CUDA build (DGA_FAST_WITH_CUDA), for CUDA tensors (kernels in cuda/ops.cu). One function per
// op serves both devices: it validates every input (dtype, device, rank, sizes, finiteness, label range; a bad
// one raises a Python ValueError / TypeError), allocates the outputs, then runs the groups in parallel with
// at::parallel_for on CPU or launches the CUDA kernel. The core also returns status codes instead of crashing.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include "core/dyga_core.h"
#include "core/estep_core.h"
#include "op_checks.h"

#ifdef DGA_FAST_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/launch.h"
#endif

namespace {

// The device every input of a call must share: CPU, or CUDA in a CUDA build.
void check_backend(const at::Tensor& t, const char* name) {
#ifdef DGA_FAST_WITH_CUDA
  TORCH_CHECK_VALUE(t.device().is_cpu() || t.device().is_cuda(), name, " must be a CPU or CUDA tensor, got ",
                    t.device());
#else
  TORCH_CHECK_VALUE(t.device().is_cpu(), name, " must be a CPU tensor (dga_fast._C was built without CUDA), got ",
                    t.device());
#endif
}

using dga_checks::check_dtype;
using dga_checks::check_same_device;

// status [G] int32 of the per-group core calls, on the op's device
void check_status(const at::Tensor& status, const char* op) {
  if (status.numel() == 0) return;
  const int s = status.max().item<int>();
  TORCH_CHECK_VALUE(s == 0, op, ": ", dga_core::status_message(static_cast<dga_core::Status>(s)));
}

#ifdef DGA_FAST_WITH_CUDA
cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
#endif

std::tuple<at::Tensor, at::Tensor> mixture_spread(const at::Tensor& x_in,       // [G, N, D] float32
                                                  const at::Tensor& labels_in,  // [G, N] int64
                                                  const at::Tensor& means_in) { // [G, K, D] float32
  check_backend(x_in, "x");
  check_same_device(labels_in, "labels", x_in, "x");
  check_same_device(means_in, "means", x_in, "x");
  check_dtype(x_in, at::kFloat, "x"); check_dtype(labels_in, at::kLong, "labels"); check_dtype(means_in, at::kFloat, "means");
  TORCH_CHECK_VALUE(x_in.dim() == 3 && labels_in.dim() == 2 && means_in.dim() == 3,
                    "x, labels, means must be [G, N, D], [G, N], [G, K, D]; got ", x_in.sizes(), ", ",
                    labels_in.sizes(), ", ", means_in.sizes());
  const int64_t G = x_in.size(0), N = x_in.size(1), D = x_in.size(2), K = means_in.size(1);
  TORCH_CHECK_VALUE(labels_in.size(0) == G && labels_in.size(1) == N && means_in.size(0) == G &&
                    means_in.size(2) == D, "sizes disagree: x ", x_in.sizes(), ", labels ", labels_in.sizes(),
                    ", means ", means_in.sizes());
  TORCH_CHECK_VALUE(K >= 1 && D >= 1, "means must have K >= 1 slots and D >= 1 dims, got ", means_in.sizes());
  auto x = x_in.contiguous(), labels = labels_in.contiguous(), means = means_in.contiguous();
  auto counts = at::zeros({G, K}, x.options().dtype(at::kLong));
#ifdef DGA_FAST_WITH_CUDA
  if (x.is_cuda()) {
    const c10::cuda::CUDAGuard guard(x.device());
    auto sums = at::zeros({G, K}, x.options().dtype(at::kDouble));
    auto flags = at::zeros({1}, x.options().dtype(at::kInt));   // the kernel checks labels and x as it reads them
    C10_CUDA_CHECK(dga_cuda::mixture_spread(x.data_ptr<float>(), labels.data_ptr<int64_t>(), means.data_ptr<float>(),
                                            G, N, K, D, counts.data_ptr<int64_t>(), sums.data_ptr<double>(),
                                            flags.data_ptr<int>(), current_stream()));
    const int kBadMeans = 4;
    flags.bitwise_or_(at::isfinite(means).logical_not().any().to(at::kInt) * kBadMeans);
    const int f = flags.item<int>();   // the op's one synchronisation
    TORCH_CHECK_VALUE(!(f & dga_cuda::kNonFiniteX), "x contains NaN or Inf values");
    TORCH_CHECK_VALUE(!(f & kBadMeans), "means contains NaN or Inf values");
    TORCH_CHECK_VALUE(!(f & dga_cuda::kBadLabel), "mixture_spread: ",
                      dga_core::status_message(dga_core::Status::kBadLabel));
    return {counts, (sums / counts.clamp_min(1).to(at::kDouble)).to(at::kFloat)};   // as the core's division
  }
#endif
  TORCH_CHECK_VALUE(at::isfinite(x).all().item<bool>(), "x contains NaN or Inf values");
  TORCH_CHECK_VALUE(at::isfinite(means).all().item<bool>(), "means contains NaN or Inf values");
  auto spread = at::zeros({G, K}, x.options().dtype(at::kDouble));
  auto status = at::zeros({G}, x.options().dtype(at::kInt));
  const float* px = x.data_ptr<float>();
  const int64_t* pl = labels.data_ptr<int64_t>();
  const float* pm = means.data_ptr<float>();
  int64_t* pc = counts.data_ptr<int64_t>();
  double* ps = spread.data_ptr<double>();
  int* pst = status.data_ptr<int>();
  at::parallel_for(0, G, 1, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g)
      pst[g] = static_cast<int>(dga_core::mixture_spread(px + g * N * D, pl + g * N, pm + g * K * D, N, K, D,
                                                         pc + g * K, ps + g * K));
  });
  check_status(status, "mixture_spread");
  return {counts, spread.to(at::kFloat)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> split_plan(const at::Tensor& active_in,   // [G, K] bool
                                                          const at::Tensor& spread_in,   // [G, K] float
                                                          const at::Tensor& counts_in,   // [G, K] int64
                                                          double threshold, int64_t max_components,
                                                          double min_count) {
  check_backend(active_in, "active");
  check_same_device(spread_in, "spread", active_in, "active");
  check_same_device(counts_in, "counts", active_in, "active");
  check_dtype(active_in, at::kBool, "active"); check_dtype(counts_in, at::kLong, "counts");
  TORCH_CHECK_TYPE(spread_in.scalar_type() == at::kFloat || spread_in.scalar_type() == at::kDouble,
                   "spread must be float32 or float64, got ", spread_in.scalar_type());
  TORCH_CHECK_VALUE(active_in.dim() == 2 && active_in.sizes() == spread_in.sizes() &&
                    active_in.sizes() == counts_in.sizes(), "active, spread, counts must all be [G, K]; got ",
                    active_in.sizes(), ", ", spread_in.sizes(), ", ", counts_in.sizes());
  TORCH_CHECK_VALUE(active_in.size(1) >= 1, "need K >= 1 slots");
  TORCH_CHECK_VALUE(max_components >= 1, "max_components must be >= 1, got ", max_components);
  const int64_t G = active_in.size(0), K = active_in.size(1);
  // compare in the spread's precision, as the reference's `spread > threshold` does
  const double thr = spread_in.scalar_type() == at::kFloat ? static_cast<double>(static_cast<float>(threshold))
                                                           : threshold;
  // torch compares int64 counts with a Python float in float32 (type promotion): do the same
  const double mc = static_cast<double>(static_cast<float>(min_count));
  auto active = active_in.to(at::kByte).contiguous();
  auto spread = spread_in.to(at::kDouble).contiguous();
  auto counts = counts_in.contiguous();
  auto src = at::empty({G, K}, counts.options());
  auto sign = at::empty({G, K}, counts.options().dtype(at::kChar));
  auto n_split = at::empty({G}, counts.options());
  auto status = at::zeros({G}, counts.options().dtype(at::kInt));
#ifdef DGA_FAST_WITH_CUDA
  if (active.is_cuda()) {
    const c10::cuda::CUDAGuard guard(active.device());
    C10_CUDA_CHECK(dga_cuda::split_plan(active.data_ptr<uint8_t>(), spread.data_ptr<double>(),
                                        counts.data_ptr<int64_t>(), G, K, thr, max_components, mc,
                                        src.data_ptr<int64_t>(), sign.data_ptr<int8_t>(),
                                        n_split.data_ptr<int64_t>(), status.data_ptr<int>(), current_stream()));
    check_status(status, "split_plan");
    return {src, sign, n_split};
  }
#endif
  int* pst = status.data_ptr<int>();
  at::parallel_for(0, G, 1, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g)
      pst[g] = static_cast<int>(dga_core::split_plan(
          active.data_ptr<uint8_t>() + g * K, spread.data_ptr<double>() + g * K, counts.data_ptr<int64_t>() + g * K,
          K, thr, max_components, mc, src.data_ptr<int64_t>() + g * K, sign.data_ptr<int8_t>() + g * K,
          n_split.data_ptr<int64_t>() + g));
  });
  check_status(status, "split_plan");
  return {src, sign, n_split};
}

std::tuple<at::Tensor, at::Tensor> filter_plan(const at::Tensor& active_in,  // [G, K] bool
                                               const at::Tensor& mass_in,    // [G, K] float
                                               double min_size) {
  check_backend(active_in, "active");
  check_same_device(mass_in, "mass", active_in, "active");
  check_dtype(active_in, at::kBool, "active");
  TORCH_CHECK_TYPE(mass_in.scalar_type() == at::kFloat || mass_in.scalar_type() == at::kDouble,
                   "mass must be float32 or float64, got ", mass_in.scalar_type());
  TORCH_CHECK_VALUE(active_in.dim() == 2 && active_in.sizes() == mass_in.sizes() && active_in.size(1) >= 1,
                    "active and mass must both be [G, K] with K >= 1; got ", active_in.sizes(), ", ", mass_in.sizes());
  const int64_t G = active_in.size(0), K = active_in.size(1);
  const double thr = mass_in.scalar_type() == at::kFloat ? static_cast<double>(static_cast<float>(min_size)) : min_size;
  auto active = active_in.to(at::kByte).contiguous();
  auto mass = mass_in.to(at::kDouble).contiguous();
  auto keep = at::empty({G, K}, active.options());
  auto order = at::empty({G, K}, active.options().dtype(at::kLong));
  auto status = at::zeros({G}, active.options().dtype(at::kInt));
#ifdef DGA_FAST_WITH_CUDA
  if (active.is_cuda()) {
    const c10::cuda::CUDAGuard guard(active.device());
    C10_CUDA_CHECK(dga_cuda::filter_plan(active.data_ptr<uint8_t>(), mass.data_ptr<double>(), G, K, thr,
                                         keep.data_ptr<uint8_t>(), order.data_ptr<int64_t>(), status.data_ptr<int>(),
                                         current_stream()));
    check_status(status, "filter_plan");
    return {keep.to(at::kBool), order};
  }
#endif
  int* pst = status.data_ptr<int>();
  at::parallel_for(0, G, 1, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g)
      pst[g] = static_cast<int>(dga_core::filter_plan(active.data_ptr<uint8_t>() + g * K,
                                                      mass.data_ptr<double>() + g * K, K, thr,
                                                      keep.data_ptr<uint8_t>() + g * K,
                                                      order.data_ptr<int64_t>() + g * K));
  });
  check_status(status, "filter_plan");
  return {keep.to(at::kBool), order};
}

bool built_with_cuda() {
#ifdef DGA_FAST_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dga_fast, m) {
  m.def("mixture_spread(Tensor x, Tensor labels, Tensor means) -> (Tensor, Tensor)");
  m.def("split_plan(Tensor active, Tensor spread, Tensor counts, float threshold, int max_components, "
        "float min_count) -> (Tensor, Tensor, Tensor)");
  m.def("filter_plan(Tensor active, Tensor mass, float min_size) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dga_fast, CPU, m) {
  m.impl("mixture_spread", &mixture_spread);
  m.impl("split_plan", &split_plan);
  m.impl("filter_plan", &filter_plan);
}

#ifdef DGA_FAST_WITH_CUDA
TORCH_LIBRARY_IMPL(dga_fast, CUDA, m) {
  m.impl("mixture_spread", &mixture_spread);
  m.impl("split_plan", &split_plan);
  m.impl("filter_plan", &filter_plan);
}
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "dga_fast native ops (registered as torch.ops.dga_fast.*)";
  m.def("built_with_cuda", &built_with_cuda, "whether the CUDA kernels of the ops were compiled in");
  m.def("estep_isa", &dga_core::estep_isa, "the instruction set the CPU E-step (hddc_estep_native) runs with");
}
