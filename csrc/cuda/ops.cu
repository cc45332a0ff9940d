// CUDA kernels of dga_fast._C: the mixture spread as a segmented reduction (shared-memory per-slot accumulators,
// one global atomic per slot and block), and the split / filter plans as one thread per group running the very
// code of the CPU ops (dga_core::split_plan / filter_plan are __host__ __device__). Torch-free; launched by
// csrc/ops.cpp, which validated the inputs (see launch.h).
#include <cuda_runtime.h>

#include <algorithm>

#include "core/dyga_core.h"
#include "cuda/launch.h"

namespace dga_cuda {
namespace {

constexpr int kThreads = 256;
// per-slot accumulators in shared memory (a double sum and a count) up to the default 48 KiB; above that many
// slots (never in practice: K is max_components) the blocks add straight into global memory
constexpr int64_t kMaxSharedSlots = 48 * 1024 / (sizeof(double) + sizeof(unsigned long long));

__global__ void spread_kernel(const float* __restrict__ x,         // [G, N, D]
                              const int64_t* __restrict__ labels,  // [G, N]
                              const float* __restrict__ means,     // [G, K, D]
                              int64_t N, int64_t K, int64_t D, int64_t blocks_per_group, bool use_shared,
                              unsigned long long* __restrict__ counts,  // [G, K]
                              double* __restrict__ sums,                // [G, K]
                              int* __restrict__ flags) {                // [1] kBadLabel | kNonFiniteX

  extern __shared__ double s_sum[];                                     // [K] then the counts [K]
  unsigned long long* s_cnt = reinterpret_cast<unsigned long long*>(s_sum + (use_shared ? K : 0));
  const int64_t g = blockIdx.x / blocks_per_group;
  const int64_t chunk = blockIdx.x % blocks_per_group;
  double* p_sum = sums + g * K;
  unsigned long long* p_cnt = counts + g * K;
  double* acc_sum = use_shared ? s_sum : p_sum;
  unsigned long long* acc_cnt = use_shared ? s_cnt : p_cnt;
  if (use_shared) {
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
      s_sum[k] = 0.0;
      s_cnt[k] = 0ULL;
    }
    __syncthreads();
  }
  const float* p_x = x + g * N * D;
  const int64_t* p_lab = labels + g * N;
  const float* p_mean = means + g * K * D;
  for (int64_t i = chunk * blockDim.x + threadIdx.x; i < N; i += blocks_per_group * blockDim.x) {
    const int64_t k = p_lab[i];
    if (k < 0 || k >= K) {   // validated here, in the one pass over the data, instead of a pass of its own
      atomicOr(flags, kBadLabel);
      continue;
    }
    bool finite = true;
    for (int64_t d = 0; d < D; ++d) finite = finite && isfinite(p_x[i * D + d]);
    if (!finite) {
      atomicOr(flags, kNonFiniteX);
      continue;
    }
    // float32 distance, double sum: as the CPU op (and bitwise the same per point)
    const double dist = sqrt(static_cast<double>(dga_core::sq_distance(p_x + i * D, p_mean + k * D, D)));
    atomicAdd(acc_sum + k, dist);
    atomicAdd(acc_cnt + k, 1ULL);
  }
  if (use_shared) {
    __syncthreads();
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
      if (s_cnt[k] == 0ULL) continue;
      atomicAdd(p_sum + k, s_sum[k]);
      atomicAdd(p_cnt + k, s_cnt[k]);
    }
  }
}

__global__ void split_plan_kernel(const uint8_t* __restrict__ active,  // [G, K]
                                  const double* __restrict__ spread,   // [G, K]
                                  const int64_t* __restrict__ counts,  // [G, K]
                                  int64_t G, int64_t K, double threshold, int64_t max_components, double min_count,
                                  int64_t* __restrict__ src,           // [G, K]
                                  int8_t* __restrict__ sign,           // [G, K]
                                  int64_t* __restrict__ n_split,       // [G]
                                  int* __restrict__ status) {          // [G]
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= G) return;
  status[g] = static_cast<int>(dga_core::split_plan(active + g * K, spread + g * K, counts + g * K, K, threshold,
                                                    max_components, min_count, src + g * K, sign + g * K,
                                                    n_split + g));
}

__global__ void filter_plan_kernel(const uint8_t* __restrict__ active,  // [G, K]
                                   const double* __restrict__ mass,     // [G, K]
                                   int64_t G, int64_t K, double min_size,
                                   uint8_t* __restrict__ keep,          // [G, K]
                                   int64_t* __restrict__ order,         // [G, K]
                                   int* __restrict__ status) {          // [G]
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= G) return;
  status[g] = static_cast<int>(dga_core::filter_plan(active + g * K, mass + g * K, K, min_size, keep + g * K,
                                                     order + g * K));
}

unsigned int group_blocks(int64_t G) { return static_cast<unsigned int>((G + 127) / 128); }

}  // namespace

cudaError_t mixture_spread(const float* x, const int64_t* labels, const float* means, int64_t G, int64_t N,
                           int64_t K, int64_t D, int64_t* counts, double* sums, int* flags, cudaStream_t stream) {
  if (G == 0 || N == 0) return cudaSuccess;
  int device = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  // enough blocks to fill the device about four times over, never more than the points need
  const int64_t per_group = std::max<int64_t>(1, (4 * static_cast<int64_t>(sms) + G - 1) / G);
  const int64_t blocks_per_group = std::min<int64_t>(per_group, (N + kThreads - 1) / kThreads);
  const bool use_shared = K <= kMaxSharedSlots;
  const size_t smem = use_shared ? static_cast<size_t>(K) * (sizeof(double) + sizeof(unsigned long long)) : 0;
  spread_kernel<<<static_cast<unsigned int>(G * blocks_per_group), kThreads, smem, stream>>>(
      x, labels, means, N, K, D, blocks_per_group, use_shared, reinterpret_cast<unsigned long long*>(counts), sums,
      flags);
  return cudaGetLastError();
}

cudaError_t split_plan(const uint8_t* active, const double* spread, const int64_t* counts, int64_t G, int64_t K,
                       double threshold, int64_t max_components, double min_count, int64_t* src, int8_t* sign,
                       int64_t* n_split, int* status, cudaStream_t stream) {
  if (G == 0) return cudaSuccess;
  split_plan_kernel<<<group_blocks(G), 128, 0, stream>>>(active, spread, counts, G, K, threshold, max_components,
                                                         min_count, src, sign, n_split, status);
  return cudaGetLastError();
}

cudaError_t filter_plan(const uint8_t* active, const double* mass, int64_t G, int64_t K, double min_size,
                        uint8_t* keep, int64_t* order, int* status, cudaStream_t stream) {
  if (G == 0) return cudaSuccess;
  filter_plan_kernel<<<group_blocks(G), 128, 0, stream>>>(active, mass, G, K, min_size, keep, order, status);
  return cudaGetLastError();
}

}  // namespace dga_cuda
