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

}  // namespace dga_checks
