// The M-step's weighted sums on CPU (see mstep_core.h). The scatter's rank-k updates are built three times
// (AVX-512, AVX2 + FMA, baseline; isa.h) and dispatched once per call; the moments are cheap and built once.
#include "mstep_core.h"

#include <cmath>
#include <vector>

#include "isa.h"

namespace dga_core {
namespace {

// The slots k of a row with r[k] > e (NaN never), in order, written to idx; returns their number. Branch-free: a
// row has one or two significant slots out of K, which a branch per slot mispredicts.
template <typename T>
DGA_INLINE int64_t significant(const T* r, int64_t K, T e, int32_t* idx) {
  int64_t n = 0;
  for (int64_t k = 0; k < K; ++k) {
    idx[n] = static_cast<int32_t>(k);
    n += r[k] > e ? 1 : 0;
  }
  return n;
}

template <typename T>
void moments_impl(const MstepGroup<T>& g, int64_t r0, int64_t r1, double eps, double* nk, double* first) {
  const int64_t K = g.K, D = g.D;
  const T e = static_cast<T>(eps);
  std::vector<int32_t> sig(static_cast<size_t>(K));
  for (int64_t i = r0; i < r1; ++i) {
    const T* x = g.x + i * D;
    const T* r = g.resp + i * K;
    const int64_t ns = significant(r, K, e, sig.data());
    for (int64_t a = 0; a < ns; ++a) {
      const int64_t k = sig[static_cast<size_t>(a)];
      const double w = static_cast<double>(r[k]);
      nk[k] += w;
      double* f = first + k * D;
      for (int64_t d = 0; d < D; ++d) f[d] += w * static_cast<double>(x[d]);
    }
  }
}

// One tile of the update below: rows a0 .. a0+A-1 of S, columns b0 .. b0+B·L-1, in A·B independent vector
// accumulators (a single accumulator would wait on its own FMA chain), each entry adding the rows' products in
// row order.
template <int64_t A, int64_t B>
DGA_INLINE void rank_tile(double* __restrict__ S, const double* __restrict__ Y, int64_t n, int64_t Dp, int64_t a0,
                          int64_t b0) {
  constexpr int64_t L = kMstepLanes;
  double acc[A][B * L];
  DGA_UNROLL for (int64_t i = 0; i < A; ++i)
    DGA_UNROLL for (int64_t l = 0; l < B * L; ++l) acc[i][l] = S[(a0 + i) * Dp + b0 + l];
  for (int64_t r = 0; r < n; ++r) {
    const double* __restrict__ y = Y + r * Dp;
    DGA_UNROLL for (int64_t i = 0; i < A; ++i) {
      const double ya = y[a0 + i];
      DGA_UNROLL for (int64_t l = 0; l < B * L; ++l) acc[i][l] += ya * y[b0 + l];
    }
  }
  DGA_UNROLL for (int64_t i = 0; i < A; ++i)
    DGA_UNROLL for (int64_t l = 0; l < B * L; ++l) S[(a0 + i) * Dp + b0 + l] = acc[i][l];
}

// S (one slot, [D, Dp]) += Σ_r y_r y_rᵀ over the n ≤ kMstepRank buffered rows Y [kMstepRank, Dp] (zero-padded
// beyond D), upper triangle only: row a from its kMstepLanes-column block on, in tiles of 4 rows (which share
// their first block) × 1 or 2 blocks. Each entry adds the rows' products in row order, and an entry's products
// are the same numbers as its mirror's (y_a·y_b = y_b·y_a).
DGA_INLINE void rank_update(double* __restrict__ S, const double* __restrict__ Y, int64_t n, int64_t D,
                            int64_t Dp) {
  constexpr int64_t L = kMstepLanes, A = 4;
  static_assert(L % A == 0, "a tile's rows must share their first column block");
  int64_t a0 = 0;
  for (; a0 + A <= D; a0 += A) {
    int64_t b0 = a0 / L * L;
    for (; b0 + 2 * L <= Dp; b0 += 2 * L) rank_tile<A, 2>(S, Y, n, Dp, a0, b0);
    if (b0 < Dp) rank_tile<A, 1>(S, Y, n, Dp, a0, b0);
  }
  for (; a0 < D; ++a0)
    for (int64_t b0 = a0 / L * L; b0 < Dp; b0 += L) rank_tile<1, 1>(S, Y, n, Dp, a0, b0);
}

// y [Dp] = s·(x − μ), zero beyond D
template <typename T>
DGA_INLINE void centre_row(double* __restrict__ y, const T* __restrict__ x, const T* __restrict__ mu, double s,
                           int64_t D, int64_t Dp) {
  constexpr int64_t L = kMstepLanes;
  int64_t d0 = 0;
  for (; d0 + L <= D; d0 += L)   // whole blocks straight-line, so that they vectorise
    DGA_UNROLL for (int64_t l = 0; l < L; ++l)
      y[d0 + l] = s * (static_cast<double>(x[d0 + l]) - static_cast<double>(mu[d0 + l]));
  for (int64_t d = d0; d < D; ++d) y[d] = s * (static_cast<double>(x[d]) - static_cast<double>(mu[d]));
  for (int64_t d = D; d < Dp; ++d) y[d] = 0.0;
}

template <typename T>
DGA_INLINE void scatter_impl(const MstepGroup<T>& g, int64_t r0, int64_t r1, double eps, double* S,
                             uint8_t* touched, double* ybuf, int64_t* nbuf) {
  const int64_t K = g.K, D = g.D, Dp = mstep_padded_dim(D), slot = D * Dp, ystride = kMstepRank * Dp;
  const T e = static_cast<T>(eps);
  for (int64_t k = 0; k < K; ++k) nbuf[k] = 0;
  std::vector<int32_t> sig(static_cast<size_t>(K));
  for (int64_t i = r0; i < r1; ++i) {
    const T* x = g.x + i * D;
    const T* r = g.resp + i * K;
    const int64_t ns = significant(r, K, e, sig.data());
    for (int64_t a = 0; a < ns; ++a) {
      const int64_t k = sig[static_cast<size_t>(a)];
      if (!touched[k]) {
        for (int64_t j = 0; j < slot; ++j) S[k * slot + j] = 0.0;
        touched[k] = 1;
      }
      const double s = std::sqrt(static_cast<double>(r[k]));
      const T* mu = g.means + k * D;
      double* y = ybuf + k * ystride + nbuf[k] * Dp;
      centre_row(y, x, mu, s, D, Dp);
      if (++nbuf[k] == kMstepRank) {
        rank_update(S + k * slot, ybuf + k * ystride, kMstepRank, D, Dp);
        nbuf[k] = 0;
      }
    }
  }
  for (int64_t k = 0; k < K; ++k)
    if (nbuf[k]) rank_update(S + k * slot, ybuf + k * ystride, nbuf[k], D, Dp);
}

#ifdef DGA_X86_BUILDS
template <typename T>
DGA_TARGET_AVX512 void scatter_avx512(const MstepGroup<T>& g, int64_t r0, int64_t r1, double eps, double* S,
                                      uint8_t* touched, double* ybuf, int64_t* nbuf) {
  scatter_impl(g, r0, r1, eps, S, touched, ybuf, nbuf);
}
template <typename T>
DGA_TARGET_AVX2 void scatter_avx2(const MstepGroup<T>& g, int64_t r0, int64_t r1, double eps, double* S,
                                  uint8_t* touched, double* ybuf, int64_t* nbuf) {
  scatter_impl(g, r0, r1, eps, S, touched, ybuf, nbuf);
}
#endif

template <typename T>
void scatter_dispatch(const MstepGroup<T>& g, int64_t r0, int64_t r1, double eps, double* S, uint8_t* touched,
                      double* ybuf, int64_t* nbuf) {
#ifdef DGA_X86_BUILDS
  switch (cpu_isa()) {
    case Isa::kAvx512: scatter_avx512(g, r0, r1, eps, S, touched, ybuf, nbuf); return;
    case Isa::kAvx2: scatter_avx2(g, r0, r1, eps, S, touched, ybuf, nbuf); return;
    default: break;
  }
#endif
  scatter_impl(g, r0, r1, eps, S, touched, ybuf, nbuf);
}

}  // namespace

void mstep_moments(const MstepGroup<float>& g, int64_t r0, int64_t r1, double eps, double* nk, double* first) {
  moments_impl(g, r0, r1, eps, nk, first);
}
void mstep_moments(const MstepGroup<double>& g, int64_t r0, int64_t r1, double eps, double* nk, double* first) {
  moments_impl(g, r0, r1, eps, nk, first);
}
void mstep_scatter(const MstepGroup<float>& g, int64_t r0, int64_t r1, double eps, double* S, uint8_t* touched,
                   double* ybuf, int64_t* nbuf) {
  scatter_dispatch(g, r0, r1, eps, S, touched, ybuf, nbuf);
}
void mstep_scatter(const MstepGroup<double>& g, int64_t r0, int64_t r1, double eps, double* S, uint8_t* touched,
                   double* ybuf, int64_t* nbuf) {
  scatter_dispatch(g, r0, r1, eps, S, touched, ybuf, nbuf);
}

}  // namespace dga_core
