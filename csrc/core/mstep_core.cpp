// The M-step's weighted sums on CPU (see mstep_core.h). The scatter's rank-k updates are built three times
// (AVX-512, AVX2 + FMA, baseline; isa.h) and dispatched once per call; the moments are cheap and built once.
#include "mstep_core.h"

#include <cmath>

#include "isa.h"

namespace dga_core {
namespace {

template <typename T>
void moments_impl(const MstepGroup<T>& g, int64_t r0, int64_t r1, double eps, double* nk, double* first) {
  const int64_t K = g.K, D = g.D;
  const T e = static_cast<T>(eps);
  for (int64_t i = r0; i < r1; ++i) {
    const T* x = g.x + i * D;
    const T* r = g.resp + i * K;
    for (int64_t k = 0; k < K; ++k) {
      if (!(r[k] > e)) continue;
      const double w = static_cast<double>(r[k]);
      nk[k] += w;
      double* f = first + k * D;
      for (int64_t d = 0; d < D; ++d) f[d] += w * static_cast<double>(x[d]);
    }
  }
}

// S (one slot, [D, Dp]) += Σ_r y_r y_rᵀ over the n ≤ kMstepRank buffered rows Y [kMstepRank, Dp] (zero-padded
// beyond D), upper triangle only, in blocks of kMstepLanes columns: each entry adds the rows' products in row
// order, and an entry's products are the same numbers as its mirror's (y_a·y_b = y_b·y_a).
DGA_INLINE void rank_update(double* __restrict__ S, const double* __restrict__ Y, int64_t n, int64_t D,
                            int64_t Dp) {
  constexpr int64_t L = kMstepLanes;
  for (int64_t a = 0; a < D; ++a) {
    for (int64_t b0 = a / L * L; b0 < Dp; b0 += L) {
      double acc[L];
      double* __restrict__ s = S + a * Dp + b0;
      for (int64_t l = 0; l < L; ++l) acc[l] = s[l];
      for (int64_t r = 0; r < n; ++r) {
        const double ya = Y[r * Dp + a];
        const double* __restrict__ yb = Y + r * Dp + b0;
        for (int64_t l = 0; l < L; ++l) acc[l] += ya * yb[l];
      }
      for (int64_t l = 0; l < L; ++l) s[l] = acc[l];
    }
  }
}

template <typename T>
DGA_INLINE void scatter_impl(const MstepGroup<T>& g, int64_t r0, int64_t r1, double eps, double* S,
                             uint8_t* touched, double* ybuf, int64_t* nbuf) {
  const int64_t K = g.K, D = g.D, Dp = mstep_padded_dim(D), slot = D * Dp, ystride = kMstepRank * Dp;
  const T e = static_cast<T>(eps);
  for (int64_t k = 0; k < K; ++k) nbuf[k] = 0;
  for (int64_t i = r0; i < r1; ++i) {
    const T* x = g.x + i * D;
    const T* r = g.resp + i * K;
    for (int64_t k = 0; k < K; ++k) {
      if (!(r[k] > e)) continue;
      if (!touched[k]) {
        for (int64_t j = 0; j < slot; ++j) S[k * slot + j] = 0.0;
        touched[k] = 1;
      }
      const double s = std::sqrt(static_cast<double>(r[k]));
      const T* mu = g.means + k * D;
      double* y = ybuf + k * ystride + nbuf[k] * Dp;
      for (int64_t d = 0; d < D; ++d) y[d] = s * (static_cast<double>(x[d]) - static_cast<double>(mu[d]));
      for (int64_t d = D; d < Dp; ++d) y[d] = 0.0;
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
