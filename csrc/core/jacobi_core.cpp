// Batched cyclic Jacobi (see jacobi_core.h), built for three instruction sets (isa.h) and dispatched once per
// call. A pass takes kLanes matrices: A (upper triangle, rows of jacobi_stride(D)) and Vᵀ (row j: eigenvector
// j, so that a rotation streams two rows) as arrays of vectors, lane l = matrix l.
#include "jacobi_core.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "isa.h"

namespace dga_core {
namespace {

template <typename T>
struct Lanes {
  static constexpr int64_t n = kJacobiBytes / static_cast<int64_t>(sizeof(T));
  typedef T vec __attribute__((vector_size(kJacobiBytes)));
  typedef decltype(vec{} < vec{}) mask;   // lane-wise comparison result (all bits set where true)
};

template <typename M>
DGA_INLINE bool any(M m, int64_t n) {
  for (int64_t l = 0; l < n; ++l)
    if (m[l]) return true;
  return false;
}

// (g, h) <- (g − s (h + g τ), h + s (g − h τ)): a Jacobi rotation of one pair of entries (Rutishauser's form)
template <typename vec>
DGA_INLINE void rotate(vec& g_ref, vec& h_ref, const vec s, const vec tau) {
  const vec g = g_ref, h = h_ref;
  g_ref = g - s * (h + g * tau);
  h_ref = h + s * (g - h * tau);
}

// A's row stride in vectors: odd, so that a column's entries do not all fall in the same cache sets (a stride of
// 32 vectors = 2 KiB made D = 32 twice as slow as D = 28)
inline int64_t jacobi_stride(int64_t D) { return D | 1; }

// One pass over up to kLanes matrices W[m0 ..), m1 - m0 of them (missing lanes are zero matrices).
template <typename T>
DGA_INLINE void jacobi_pass(const T* W, int64_t m0, int64_t m1, int64_t D, T* evals, T* evecs, uint8_t* converged,
                            typename Lanes<T>::vec* A, typename Lanes<T>::vec* Vt) {
  using vec = typename Lanes<T>::vec;
  using mask = typename Lanes<T>::mask;
  constexpr int64_t L = Lanes<T>::n;
  const int64_t nm = m1 - m0, S = jacobi_stride(D);
  const T eps = std::numeric_limits<T>::epsilon();
  // entries at the rounding level of the largest diagonal entry (|a| <= eps · max(0, max_i a_ii)) are zero: they
  // carry no information (dga_fast/mixture/mstep.py, robust_eigh, does the same before LAPACK)
  vec tiny{};
  for (int64_t l = 0; l < nm; ++l) {
    T top = T(0);
    for (int64_t i = 0; i < D; ++i) top = std::max(top, W[((m0 + l) * D + i) * D + i]);
    tiny[l] = eps * top;
  }
  vec norm2{};
  for (int64_t i = 0; i < D; ++i)
    for (int64_t j = i; j < D; ++j) {
      vec a{};
      for (int64_t l = 0; l < nm; ++l) a[l] = W[((m0 + l) * D + j) * D + i];   // lower triangle: W[j][i]
      a = (a <= tiny) & (a >= -tiny) ? vec{} : a;
      A[i * S + j] = a;
      norm2 += (i == j ? T(1) : T(2)) * a * a;
      Vt[i * D + j] = Vt[j * D + i] = vec{} + (i == j ? T(1) : T(0));
    }
  vec thr{};
  for (int64_t l = 0; l < L; ++l) thr[l] = eps * std::sqrt(norm2[l]);
  mask live = norm2 > T(0);   // also false for a NaN norm: such a matrix is not rotated
  int sweep = 0;
  for (; sweep < kJacobiMaxSweeps && any(live, L); ++sweep) {
    mask rotated = live != live;   // all false
    for (int64_t p = 0; p + 1 < D; ++p)
      for (int64_t q = p + 1; q < D; ++q) {
        const vec apq = A[p * S + q];
        const mask go = live & ((apq < -thr) | (apq > thr));
        if (!any(go, L)) continue;
        rotated |= go;
        const vec app = A[p * S + p], aqq = A[q * S + q];
        const vec ap = go ? apq : vec{} + T(1);                  // no division by 0 in idle lanes
        const vec theta = (aqq - app) / (T(2) * ap);
        const vec at = theta < T(0) ? -theta : theta;
        vec root;
        for (int64_t l = 0; l < L; ++l) root[l] = std::sqrt(theta[l] * theta[l] + T(1));
        vec t = T(1) / (at + root);
        t = theta < T(0) ? -t : t;
        t = go ? t : vec{};                                      // identity in idle lanes
        vec c;
        for (int64_t l = 0; l < L; ++l) c[l] = T(1) / std::sqrt(t[l] * t[l] + T(1));
        const vec s = t * c, tau = s / (T(1) + c);
        A[p * S + p] = app - t * apq;
        A[q * S + q] = aqq + t * apq;
        A[p * S + q] = go ? vec{} : apq;
        // the other entries of rows / columns p and q (upper triangle: (k, p) lives at A[min][max])
        for (int64_t k = 0; k < p; ++k) rotate(A[k * S + p], A[k * S + q], s, tau);
        for (int64_t k = p + 1; k < q; ++k) rotate(A[p * S + k], A[k * S + q], s, tau);
        for (int64_t k = q + 1; k < D; ++k) rotate(A[p * S + k], A[q * S + k], s, tau);
        for (int64_t k = 0; k < D; ++k) rotate(Vt[p * D + k], Vt[q * D + k], s, tau);
      }
    live &= rotated;
  }
  std::vector<int64_t> order(static_cast<size_t>(D));
  for (int64_t l = 0; l < nm; ++l) {
    const int64_t m = m0 + l;
    converged[m] = live[l] ? 0 : 1;
    if (!std::isfinite(norm2[l])) {   // a non-finite entry (or overflow): NaN eigenpairs, as torch.linalg.eigh gives
      converged[m] = 1;
      for (int64_t j = 0; j < D; ++j) evals[m * D + j] = std::numeric_limits<T>::quiet_NaN();
      for (int64_t j = 0; j < D * D; ++j) evecs[m * D * D + j] = std::numeric_limits<T>::quiet_NaN();
      continue;
    }
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return A[a * S + a][l] < A[b * S + b][l]; });
    for (int64_t j = 0; j < D; ++j) {
      const int64_t src = order[static_cast<size_t>(j)];
      evals[m * D + j] = A[src * S + src][l];
      for (int64_t k = 0; k < D; ++k) evecs[(m * D + k) * D + j] = Vt[src * D + k][l];
    }
  }
}

template <typename T>
DGA_INLINE void jacobi_impl(const T* W, int64_t M, int64_t D, T* evals, T* evecs, uint8_t* converged) {
  using vec = typename Lanes<T>::vec;
  constexpr int64_t L = Lanes<T>::n;
  // A (D rows of stride S) and Vt (D × D), in one buffer aligned to kJacobiBytes (the vectors' alignment)
  std::vector<T> buf(static_cast<size_t>((D * jacobi_stride(D) + D * D + 1) * L));
  const uintptr_t base = reinterpret_cast<uintptr_t>(buf.data());
  vec* A = reinterpret_cast<vec*>((base + kJacobiBytes - 1) / kJacobiBytes * kJacobiBytes);
  vec* Vt = A + D * jacobi_stride(D);
  for (int64_t m0 = 0; m0 < M; m0 += L) jacobi_pass(W, m0, std::min(M, m0 + L), D, evals, evecs, converged, A, Vt);
}

#ifdef DGA_X86_BUILDS
template <typename T>
DGA_TARGET_AVX512 void jacobi_avx512(const T* W, int64_t M, int64_t D, T* evals, T* evecs, uint8_t* converged) {
  jacobi_impl(W, M, D, evals, evecs, converged);
}
template <typename T>
DGA_TARGET_AVX2 void jacobi_avx2(const T* W, int64_t M, int64_t D, T* evals, T* evecs, uint8_t* converged) {
  jacobi_impl(W, M, D, evals, evecs, converged);
}
#endif

template <typename T>
void jacobi_dispatch(const T* W, int64_t M, int64_t D, T* evals, T* evecs, uint8_t* converged) {
#ifdef DGA_X86_BUILDS
  switch (cpu_isa()) {
    case Isa::kAvx512: jacobi_avx512(W, M, D, evals, evecs, converged); return;
    case Isa::kAvx2: jacobi_avx2(W, M, D, evals, evecs, converged); return;
    default: break;
  }
#endif
  jacobi_impl(W, M, D, evals, evecs, converged);
}

}  // namespace

void jacobi_eigh(const float* W, int64_t M, int64_t D, float* evals, float* evecs, uint8_t* converged) {
  jacobi_dispatch(W, M, D, evals, evecs, converged);
}
void jacobi_eigh(const double* W, int64_t M, int64_t D, double* evals, double* evecs, uint8_t* converged) {
  jacobi_dispatch(W, M, D, evals, evecs, converged);
}

}  // namespace dga_core
