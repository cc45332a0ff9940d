// Batched cyclic Jacobi (see jacobi_core.h), built for three instruction sets (isa.h) and dispatched once per
// call. A pass takes kLanes matrices: A (upper triangle, rows of jacobi_stride(D)) and Vᵀ (row j: eigenvector
// j, so that a rotation streams two rows) as arrays of vectors, lane l = matrix l.
#include "jacobi_core.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
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

// n vectors of T, aligned to kJacobiBytes (the vectors' alignment), uninitialised (the rotation log is sized
// for kJacobiMaxSweeps; its pages are only touched as far as it is written)
template <typename T>
struct VecBuf {
  using vec = typename Lanes<T>::vec;
  std::unique_ptr<T[]> raw;
  vec* p;
  explicit VecBuf(int64_t n) : raw(new T[static_cast<size_t>((n + 1) * Lanes<T>::n)]) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(raw.get());
    p = reinterpret_cast<vec*>((base + kJacobiBytes - 1) / kJacobiBytes * kJacobiBytes);
  }
};

// The scratch of one thread: A (D rows of stride S); Vt (D × D) when every eigenvector is wanted, else the log of
// the applied rotations (p, q, and s, τ per lane) from which the wanted ones are rebuilt, and their D × top rows.
template <typename T>
struct Scratch {
  int64_t D, top;
  VecBuf<T> A, Vt, rot, Y;
  std::vector<int32_t> pq;
  Scratch(int64_t D_, int64_t top_)
      : D(D_), top(top_), A(D_ * jacobi_stride(D_)), Vt(top_ == D_ ? D_ * D_ : 0),
        rot(top_ == D_ ? 0 : 2 * kJacobiMaxSweeps * D_ * (D_ - 1) / 2), Y(top_ == D_ ? 0 : top_ * D_) {}
  bool full() const { return top == D; }
};

// The sweeps over up to kLanes matrices W[m0 ..), nm of them (missing lanes are zero matrices): live gets the
// lanes still rotating after kJacobiMaxSweeps (none, normally), norm2 every lane's squared Frobenius norm; the
// diagonal is left in A, the eigenvectors in Vt or the rotations in the log.
template <typename T>
DGA_INLINE void jacobi_sweeps(const T* W, int64_t m0, int64_t nm, Scratch<T>& sc, typename Lanes<T>::vec& norm2,
                              typename Lanes<T>::mask& live) {
  using vec = typename Lanes<T>::vec;
  using mask = typename Lanes<T>::mask;
  constexpr int64_t L = Lanes<T>::n;
  const int64_t D = sc.D, S = jacobi_stride(D);
  vec* A = sc.A.p;
  vec* Vt = sc.Vt.p;
  const T eps = std::numeric_limits<T>::epsilon();
  // entries at the rounding level of the largest diagonal entry (|a| <= eps · max(0, max_i a_ii)) are zero: they
  // carry no information (dga_fast/mixture/mstep.py, robust_eigh, does the same before LAPACK)
  vec tiny{};
  for (int64_t l = 0; l < nm; ++l) {
    T top = T(0);
    for (int64_t i = 0; i < D; ++i) top = std::max(top, W[((m0 + l) * D + i) * D + i]);
    tiny[l] = eps * top;
  }
  norm2 = vec{};
  for (int64_t i = 0; i < D; ++i)
    for (int64_t j = i; j < D; ++j) {
      vec a{};
      for (int64_t l = 0; l < nm; ++l) a[l] = W[((m0 + l) * D + j) * D + i];   // lower triangle: W[j][i]
      a = (a <= tiny) & (a >= -tiny) ? vec{} : a;
      A[i * S + j] = a;
      norm2 += (i == j ? T(1) : T(2)) * a * a;
      if (sc.full()) Vt[i * D + j] = Vt[j * D + i] = vec{} + (i == j ? T(1) : T(0));
    }
  vec thr{};
  for (int64_t l = 0; l < L; ++l) thr[l] = eps * std::sqrt(norm2[l]);
  sc.pq.clear();
  live = norm2 > T(0);   // also false for a NaN norm: such a matrix is not rotated
  for (int sweep = 0; sweep < kJacobiMaxSweeps && any(live, L); ++sweep) {
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
        if (sc.full()) {
          for (int64_t k = 0; k < D; ++k) rotate(Vt[p * D + k], Vt[q * D + k], s, tau);
        } else {
          const int64_t r = static_cast<int64_t>(sc.pq.size()) / 2;
          sc.pq.push_back(static_cast<int32_t>(p));
          sc.pq.push_back(static_cast<int32_t>(q));
          sc.rot.p[2 * r] = s;
          sc.rot.p[2 * r + 1] = tau;
        }
      }
    live &= rotated;
  }
}

// Y [top][D] <- the eigenvectors of diagonal positions j[o][l] (lane l), rebuilt from the log: V e_j =
// G_1 (G_2 (… G_R e_j)), each G_r acting on coordinates p, q only, so a vector costs O(R) instead of the O(R·D)
// of accumulating V (the rotation with s → −s, τ → −τ is Gᵀ's action on a row, i.e. G's on a column).
template <typename T>
DGA_INLINE void rebuild_vectors(Scratch<T>& sc, const std::vector<int64_t>& j) {
  using vec = typename Lanes<T>::vec;
  constexpr int64_t L = Lanes<T>::n;
  const int64_t D = sc.D, top = sc.top;
  vec* Y = sc.Y.p;
  for (int64_t o = 0; o < top; ++o)
    for (int64_t k = 0; k < D; ++k) {
      vec e{};
      for (int64_t l = 0; l < L; ++l) e[l] = j[static_cast<size_t>(o * L + l)] == k ? T(1) : T(0);
      Y[o * D + k] = e;
    }
  for (int64_t r = static_cast<int64_t>(sc.pq.size()) / 2 - 1; r >= 0; --r) {
    const int64_t p = sc.pq[static_cast<size_t>(2 * r)], q = sc.pq[static_cast<size_t>(2 * r + 1)];
    const vec s = -sc.rot.p[2 * r], tau = -sc.rot.p[2 * r + 1];
    for (int64_t o = 0; o < top; ++o) rotate(Y[o * D + p], Y[o * D + q], s, tau);
  }
}

// One pass: sweeps, then per matrix the eigenvalues in ascending order and the wanted eigenvectors.
template <typename T>
DGA_INLINE void jacobi_pass(const T* W, int64_t m0, int64_t m1, T* evals, T* evecs, uint8_t* converged,
                            Scratch<T>& sc) {
  constexpr int64_t L = Lanes<T>::n;
  const int64_t D = sc.D, S = jacobi_stride(D), top = sc.top, nm = m1 - m0;
  typename Lanes<T>::vec norm2;
  typename Lanes<T>::mask live;
  jacobi_sweeps(W, m0, nm, sc, norm2, live);
  const auto* A = sc.A.p;
  std::vector<int64_t> order(static_cast<size_t>(D)), pick(static_cast<size_t>(top * L), 0);
  for (int64_t l = 0; l < nm; ++l) {
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return A[a * S + a][l] < A[b * S + b][l]; });
    for (int64_t j = 0; j < D; ++j) evals[(m0 + l) * D + j] = A[order[j] * S + order[j]][l];
    for (int64_t o = 0; o < top; ++o) pick[static_cast<size_t>(o * L + l)] = order[static_cast<size_t>(D - top + o)];
  }
  if (!sc.full()) rebuild_vectors(sc, pick);
  for (int64_t l = 0; l < nm; ++l) {
    const int64_t m = m0 + l;
    converged[m] = live[l] ? 0 : 1;
    for (int64_t o = 0; o < top; ++o) {
      const int64_t src = pick[static_cast<size_t>(o * L + l)];
      for (int64_t k = 0; k < D; ++k)
        evecs[(m * D + k) * top + o] = sc.full() ? sc.Vt.p[src * D + k][l] : sc.Y.p[o * D + k][l];
    }
    if (!std::isfinite(norm2[l])) {   // a non-finite entry (or overflow): NaN eigenpairs, as torch.linalg.eigh gives
      converged[m] = 1;
      for (int64_t j = 0; j < D; ++j) evals[m * D + j] = std::numeric_limits<T>::quiet_NaN();
      for (int64_t j = 0; j < D * top; ++j) evecs[m * D * top + j] = std::numeric_limits<T>::quiet_NaN();
    }
  }
}

template <typename T>
DGA_INLINE void jacobi_impl(const T* W, int64_t M, int64_t D, int64_t top, T* evals, T* evecs,
                            uint8_t* converged) {
  constexpr int64_t L = Lanes<T>::n;
  Scratch<T> sc(D, top);
  for (int64_t m0 = 0; m0 < M; m0 += L) jacobi_pass(W, m0, std::min(M, m0 + L), evals, evecs, converged, sc);
}

#ifdef DGA_X86_BUILDS
template <typename T>
DGA_TARGET_AVX512 void jacobi_avx512(const T* W, int64_t M, int64_t D, int64_t top, T* evals, T* evecs,
                                     uint8_t* converged) {
  jacobi_impl(W, M, D, top, evals, evecs, converged);
}
template <typename T>
DGA_TARGET_AVX2 void jacobi_avx2(const T* W, int64_t M, int64_t D, int64_t top, T* evals, T* evecs,
                                 uint8_t* converged) {
  jacobi_impl(W, M, D, top, evals, evecs, converged);
}
#endif

template <typename T>
void jacobi_dispatch(const T* W, int64_t M, int64_t D, int64_t top, T* evals, T* evecs, uint8_t* converged) {
  top = top <= 0 || top > D ? D : top;
#ifdef DGA_X86_BUILDS
  switch (cpu_isa()) {
    case Isa::kAvx512: jacobi_avx512(W, M, D, top, evals, evecs, converged); return;
    case Isa::kAvx2: jacobi_avx2(W, M, D, top, evals, evecs, converged); return;
    default: break;
  }
#endif
  jacobi_impl(W, M, D, top, evals, evecs, converged);
}

}  // namespace

void jacobi_eigh(const float* W, int64_t M, int64_t D, int64_t top, float* evals, float* evecs,
                 uint8_t* converged) {
  jacobi_dispatch(W, M, D, top, evals, evecs, converged);
}
void jacobi_eigh(const double* W, int64_t M, int64_t D, int64_t top, double* evals, double* evecs,
                 uint8_t* converged) {
  jacobi_dispatch(W, M, D, top, evals, evecs, converged);
}

}  // namespace dga_core
