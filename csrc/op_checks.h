// Input checks shared by the op files of dga_fast._C: a failed check raises a Python ValueError / TypeError
// (TORCH_CHECK_VALUE / TORCH_CHECK_TYPE) that names the argument.
#pragma once

#include <ATen/ATen.h>

namespace dga_checks {

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " must be on the same device as ", ref_name, " (",
                    ref.device(), "), got ", t.device());
}

inline void check_dtype(const at::Tensor& t, at::ScalarType want, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == want, name, " must be ", at::toString(want), ", got ", t.scalar_type());
}

// t has exactly the sizes `want` (rendered in the message as `shape`, e.g. "[G, K, D]")
inline void check_sizes(const at::Tensor& t, at::IntArrayRef want, const char* name, const char* shape) {
  TORCH_CHECK_VALUE(t.sizes() == want, name, " must be ", shape, " = ", want, ", got ", t.sizes());
}

// t is a CPU tensor (the op `op` has no other device) of float32 or float64
inline void check_cpu_float(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), name, " must be a CPU tensor (", op, "), got ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                   " must be float32 or float64, got ", t.scalar_type());
}

// x is the points of an op: a CPU float32/float64 tensor [G, N, D] with D >= 1
inline void check_points(const at::Tensor& x, const char* op) {
  check_cpu_float(x, "x", op);
  TORCH_CHECK_VALUE(x.dim() == 3 && x.size(2) >= 1, "x must be [G, N, D] with D >= 1, got ", x.sizes());
}

// t is on ref's device and of ref's dtype
inline void check_device_dtype(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  check_same_device(t, name, ref, ref_name);
  check_dtype(t, ref.scalar_type(), name);
}

// t is on ref's device, of dtype `want` and of exactly the sizes `sizes` (rendered as `shape`)
inline void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name,
                       at::ScalarType want, at::IntArrayRef sizes, const char* shape) {
  check_same_device(t, name, ref, ref_name);
  check_dtype(t, want, name);
  check_sizes(t, sizes, name, shape);
}

// the int64 labels (contiguous) lie in [0, K)
inline void check_labels(const at::Tensor& labels, int64_t K, const char* name) {
  TORCH_CHECK_VALUE(labels.numel() == 0 || (labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < K),
                    name, " must lie in [0, K = ", K, ")");
}

}  // namespace dga_checks
