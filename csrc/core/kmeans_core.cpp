// One Lloyd step on CPU (see kmeans_core.h), built for three instruction sets and dispatched once per call.
#include "kmeans_core.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "chunk_sums.h"
#include "isa.h"

namespace dga_core {
namespace {

// kKmeansLanes doubles as one vector (GCC / Clang vector extension: one AVX-512 register, two AVX2 ones, ...)
typedef double v8d __attribute__((vector_size(kKmeansLanes * sizeof(double))));

// dist [R, Kp]: the squared distances of rows i0 .. i0+R-1 to every centre, one block of kKmeansLanes centres at
// a time in R vector accumulators (R independent chains hide the FMA latency), j in order.
template <int64_t R, typename T>
DGA_INLINE void distances(const T* x, int64_t i0, int64_t D, const double* ct, int64_t Kp, double* dist) {
  constexpr int64_t L = kKmeansLanes;
  for (int64_t k0 = 0; k0 < Kp; k0 += L) {
    v8d acc[R];
    DGA_UNROLL for (int64_t r = 0; r < R; ++r) acc[r] = v8d{};
    for (int64_t j = 0; j < D; ++j) {
      v8d c;
      std::memcpy(&c, ct + j * Kp + k0, sizeof(c));
      DGA_UNROLL for (int64_t r = 0; r < R; ++r) {
        const v8d diff = static_cast<double>(x[(i0 + r) * D + j]) - c;
        acc[r] += diff * diff;
      }
    }
    DGA_UNROLL for (int64_t r = 0; r < R; ++r) std::memcpy(dist + r * Kp + k0, &acc[r], sizeof(acc[r]));
  }
}

// row i to its least centre (the first; NaN counts as least), added to the counts and sums
template <typename T>
DGA_INLINE void take(const T* x, int64_t i, int64_t D, const double* d, int64_t K, int64_t* labels, double* counts,
                     double* sums) {
  int64_t best = 0;
  for (int64_t k = 1; k < K && !std::isnan(d[best]); ++k)
    if (d[k] < d[best] || std::isnan(d[k])) best = k;
  labels[i] = best;
  counts[best] += 1.0;
  double* s = sums + best * D;
  const T* xi = x + i * D;
  for (int64_t j = 0; j < D; ++j) s[j] += static_cast<double>(xi[j]);
}

template <typename T>
DGA_INLINE void assign_impl(const T* x, int64_t r0, int64_t r1, int64_t D, const double* ct, int64_t K,
                            int64_t* labels, double* counts, double* sums) {
  constexpr int64_t R = 4;
  const int64_t Kp = kmeans_padded(K);
  std::vector<double> dist(static_cast<size_t>(R * Kp));
  int64_t i = r0;
  for (; i + R <= r1; i += R) {
    distances<R>(x, i, D, ct, Kp, dist.data());
    for (int64_t r = 0; r < R; ++r) take(x, i + r, D, dist.data() + r * Kp, K, labels, counts, sums);
  }
  for (; i < r1; ++i) {
    distances<1>(x, i, D, ct, Kp, dist.data());
    take(x, i, D, dist.data(), K, labels, counts, sums);
  }
}

#ifdef DGA_X86_BUILDS
template <typename T>
DGA_TARGET_AVX512 void assign_avx512(const T* x, int64_t r0, int64_t r1, int64_t D, const double* ct, int64_t K,
                                     int64_t* labels, double* counts, double* sums) {
  assign_impl(x, r0, r1, D, ct, K, labels, counts, sums);
}
template <typename T>
DGA_TARGET_AVX2 void assign_avx2(const T* x, int64_t r0, int64_t r1, int64_t D, const double* ct, int64_t K,
                                 int64_t* labels, double* counts, double* sums) {
  assign_impl(x, r0, r1, D, ct, K, labels, counts, sums);
}
#endif

template <typename T>
void assign_dispatch(const T* x, int64_t r0, int64_t r1, int64_t D, const double* ct, int64_t K, int64_t* labels,
                     double* counts, double* sums) {
#ifdef DGA_X86_BUILDS
  switch (cpu_isa()) {
    case Isa::kAvx512: assign_avx512(x, r0, r1, D, ct, K, labels, counts, sums); return;
    case Isa::kAvx2: assign_avx2(x, r0, r1, D, ct, K, labels, counts, sums); return;
    default: break;
  }
#endif
  assign_impl(x, r0, r1, D, ct, K, labels, counts, sums);
}

}  // namespace

void kmeans_assign(const float* x, int64_t r0, int64_t r1, int64_t D, const double* ct, int64_t K,
                   int64_t* labels, double* counts, double* sums) {
  assign_dispatch(x, r0, r1, D, ct, K, labels, counts, sums);
}
void kmeans_assign(const double* x, int64_t r0, int64_t r1, int64_t D, const double* ct, int64_t K,
                   int64_t* labels, double* counts, double* sums) {
  assign_dispatch(x, r0, r1, D, ct, K, labels, counts, sums);
}

namespace {

template <typename T>
int lloyd_impl(const T* x, int64_t N, int64_t D, T* centers, int64_t K, int max_iter, int64_t chunk,
               int64_t* labels) {
  const int64_t Kp = kmeans_padded(K), C = (N + chunk - 1) / chunk;
  std::vector<double> ct(static_cast<size_t>(D * Kp), 0.0), cnt(static_cast<size_t>(C * K));
  std::vector<double> sum(static_cast<size_t>(C * K * D));
  std::vector<T> counts(static_cast<size_t>(K)), sums(static_cast<size_t>(K * D));
  std::vector<int64_t> next(static_cast<size_t>(N));
  // one step: labels `out` of every row and the counts / sums per label (chunk by chunk, the chunks added in order,
  // then rounded to T: the op kmeans_assign's results)
  auto step = [&](int64_t* out) {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < D; ++j) ct[static_cast<size_t>(j * Kp + k)] = static_cast<double>(centers[k * D + j]);
    std::fill(cnt.begin(), cnt.end(), 0.0);
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int64_t c = 0; c < C; ++c)
      kmeans_assign(x, c * chunk, std::min(N, (c + 1) * chunk), D, ct.data(), K, out, cnt.data() + c * K,
                    sum.data() + c * K * D);
    add_chunks(cnt.data(), C, K, counts.data());
    add_chunks(sum.data(), C, K * D, sums.data());
  };
  step(labels);
  int it = 0;
  for (; it < max_iter; ++it) {
    for (int64_t k = 0; k < K; ++k)   // an emptied cluster keeps its centre
      if (counts[k] > T(0))
        for (int64_t j = 0; j < D; ++j) centers[k * D + j] = sums[k * D + j] / std::max(counts[k], T(1));
    step(next.data());
    if (std::equal(next.begin(), next.end(), labels)) break;
    std::copy(next.begin(), next.end(), labels);
  }
  return it;
}

}  // namespace

int kmeans_lloyd(const float* x, int64_t N, int64_t D, float* centers, int64_t K, int max_iter, int64_t chunk,
                 int64_t* labels) {
  return lloyd_impl(x, N, D, centers, K, max_iter, chunk, labels);
}
int kmeans_lloyd(const double* x, int64_t N, int64_t D, double* centers, int64_t K, int max_iter, int64_t chunk,
                 int64_t* labels) {
  return lloyd_impl(x, N, D, centers, K, max_iter, chunk, labels);
}

}  // namespace dga_core
