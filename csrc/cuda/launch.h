// Launchers of the CUDA kernels of dga_fast._C (csrc/cuda/ops.cu). Torch-free (raw pointers, a stream, a
// cudaError_t back), so `nvcc -c` checks them on a machine whose torch has no CUDA. csrc/ops.cpp calls them on
// validated tensors: contiguous, on the current CUDA device, of the documented dtype and size. Built only when
// the extension is a CUDAExtension (DGA_FAST_WITH_CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dga_cuda {

// Bits of the spread kernel's flags: what it found wrong while reading the data (those points are skipped).
constexpr int kBadLabel = 1;     // a label outside [0, K)
constexpr int kNonFiniteX = 2;   // a NaN or Inf in x

// Segmented reduction over N: per (group, slot) the number of hard-assigned points and the sum of their
// distances to the slot's mean. x [G, N, D], labels [G, N], means [G, K, D] -> counts [G, K] and sums [G, K],
// both zero on entry, and flags [1] (zero on entry; the bits above).
cudaError_t mixture_spread(const float* x, const int64_t* labels, const float* means, int64_t G, int64_t N,
                           int64_t K, int64_t D, int64_t* counts, double* sums, int* flags, cudaStream_t stream);

// dga_core::split_plan, one thread per group: active, spread, counts [G, K] -> src, sign [G, K], n_split and
// status [G].
cudaError_t split_plan(const uint8_t* active, const double* spread, const int64_t* counts, int64_t G, int64_t K,
                       double threshold, int64_t max_components, double min_count, int64_t* src, int8_t* sign,
                       int64_t* n_split, int* status, cudaStream_t stream);

// dga_core::filter_plan, one thread per group: active, mass [G, K] -> keep, order [G, K] and status [G].
cudaError_t filter_plan(const uint8_t* active, const double* mass, int64_t G, int64_t K, double min_size,
                        uint8_t* keep, int64_t* order, int* status, cudaStream_t stream);

}  // namespace dga_cuda
