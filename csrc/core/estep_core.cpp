// The fused HDDC E-step on CPU (see estep_core.h). One template, built three times: for AVX-512, for AVX2 + FMA
// and for the compiler's baseline; estep_rows picks the widest the CPU runs, once per process.
#include "estep_core.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "isa.h"

namespace dga_core {
namespace {

// xt [D][R] <- rows t0 .. t0+n-1 of x transposed; lanes n..R-1 repeat row t0 (finite, their results unused).
template <typename T>
DGA_INLINE void load_tile(const EstepGroup<T>& g, int64_t t0, int64_t n, T* xt) {
  constexpr int64_t R = kEstepTile;
  for (int64_t r = 0; r < R; ++r) {
    const T* row = g.x + (t0 + (r < n ? r : 0)) * g.D;
    for (int64_t d = 0; d < g.D; ++d) xt[d * R + r] = row[d];
  }
}

// lp [R] <- log p_k of the tile's rows for the active slot k (xt, zt [D][R]; zt is scratch). The per-row
// accumulators are local arrays of R lanes, which the compiler keeps in vector registers.
template <typename T>
DGA_INLINE void slot_logp(const EstepGroup<T>& g, int64_t k, const T* __restrict__ xt, T* __restrict__ zt,
                          T* __restrict__ lp) {
  constexpr int64_t R = kEstepTile;
  const int64_t D = g.D, DM = g.DM;
  const T* __restrict__ mu = g.means + k * D;
  const T* __restrict__ qk = g.q + k * D * DM;
  const T* __restrict__ wk = g.w + k * DM;
  T acc[R] = {}, ysum[R] = {};
  for (int64_t d = 0; d < D; ++d) {                      // z = x − μ_k and ‖z‖², over d in order
    const T m = mu[d];
    for (int64_t r = 0; r < R; ++r) {
      const T z = xt[d * R + r] - m;
      zt[d * R + r] = z;
      acc[r] += z * z;
    }
  }
  for (int64_t j = 0; j < DM; ++j) {                     // Σ_j w_j y_j², y_j = q_jᵀ z over d in order
    T y[R] = {};
    for (int64_t d = 0; d < D; ++d) {
      const T qv = qk[d * DM + j];
      for (int64_t r = 0; r < R; ++r) y[r] += qv * zt[d * R + r];
    }
    const T wj = wk[j];
    for (int64_t r = 0; r < R; ++r) ysum[r] += wj * (y[r] * y[r]);
  }
  const T ib = g.inv_b[k], c = g.cst[k];
  for (int64_t r = 0; r < R; ++r) lp[r] = T(-0.5) * ((acc[r] * ib + c) + ysum[r]);
}

// slot_logp for DM = J known at compile time: one pass over d that updates ‖z‖² and all J projections at once,
// J + 1 independent accumulator chains instead of one chain at a time. Every sum runs over d in the same order
// with the same operations, so the results are bit for bit slot_logp's.
template <int64_t J, typename T>
DGA_INLINE void slot_logp_fixed(const EstepGroup<T>& g, int64_t k, const T* __restrict__ xt, T* __restrict__ lp) {
  constexpr int64_t R = kEstepTile;
  const int64_t D = g.D;
  const T* __restrict__ mu = g.means + k * D;
  const T* __restrict__ qk = g.q + k * D * J;
  const T* __restrict__ wk = g.w + k * J;
  T acc[R] = {}, ysum[R] = {}, y[J][R] = {};
  for (int64_t d = 0; d < D; ++d) {
    const T m = mu[d];
    T z[R];
    DGA_UNROLL for (int64_t r = 0; r < R; ++r) {
      z[r] = xt[d * R + r] - m;
      acc[r] += z[r] * z[r];
    }
    DGA_UNROLL for (int64_t j = 0; j < J; ++j) {
      const T qv = qk[d * J + j];
      DGA_UNROLL for (int64_t r = 0; r < R; ++r) y[j][r] += qv * z[r];
    }
  }
  DGA_UNROLL for (int64_t j = 0; j < J; ++j) {
    const T wj = wk[j];
    DGA_UNROLL for (int64_t r = 0; r < R; ++r) ysum[r] += wj * (y[j][r] * y[j][r]);
  }
  const T ib = g.inv_b[k], c = g.cst[k];
  DGA_UNROLL for (int64_t r = 0; r < R; ++r) lp[r] = T(-0.5) * ((acc[r] * ib + c) + ysum[r]);
}

template <typename T>
DGA_INLINE void slot_logp_any(const EstepGroup<T>& g, int64_t k, const T* xt, T* zt, T* lp) {
  switch (g.DM) {
    case 1: slot_logp_fixed<1>(g, k, xt, lp); return;
    case 2: slot_logp_fixed<2>(g, k, xt, lp); return;
    case 4: slot_logp_fixed<4>(g, k, xt, lp); return;
    case 8: slot_logp_fixed<8>(g, k, xt, lp); return;
    default: slot_logp(g, k, xt, zt, lp);
  }
}

// log-sum-exp over the slots of the tile's first n rows, written to log_resp and loglik (lp [K][R]).
template <typename T>
DGA_INLINE void normalise_rows(const EstepGroup<T>& g, int64_t t0, int64_t n, const T* lp) {
  constexpr int64_t R = kEstepTile;
  const int64_t K = g.K;
  for (int64_t r = 0; r < n; ++r) {
    T top = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < K; ++k) top = std::max(top, lp[k * R + r]);
    T s = T(0);
    for (int64_t k = 0; k < K; ++k) s += std::exp(std::max(lp[k * R + r] - top, T(-80)));
    const T ll = std::log(s) + top;
    T* out = g.log_resp + (t0 + r) * K;
    for (int64_t k = 0; k < K; ++k) out[k] = lp[k * R + r] - ll;
    g.loglik[t0 + r] = ll;
  }
}

template <typename T>
DGA_INLINE void rows_impl(const EstepGroup<T>& g, int64_t r0, int64_t r1, T* scratch) {
  constexpr int64_t R = kEstepTile;
  T* xt = scratch;              // [D][R]
  T* zt = xt + g.D * R;         // [D][R]
  T* lp = zt + g.D * R;         // [K][R]
  for (int64_t t0 = r0; t0 < r1; t0 += R) {
    const int64_t n = std::min(R, r1 - t0);
    load_tile(g, t0, n, xt);
    for (int64_t k = 0; k < g.K; ++k) {
      if (std::isinf(g.cst[k])) {                        // inactive slot: c_k = +inf
        for (int64_t r = 0; r < R; ++r) lp[k * R + r] = -std::numeric_limits<T>::infinity();
        continue;
      }
      slot_logp_any(g, k, xt, zt, lp + k * R);
    }
    normalise_rows(g, t0, n, lp);
  }
}

#ifdef DGA_X86_BUILDS
template <typename T>
DGA_TARGET_AVX512 void rows_avx512(const EstepGroup<T>& g, int64_t r0, int64_t r1, T* s) {
  rows_impl(g, r0, r1, s);
}
template <typename T>
DGA_TARGET_AVX2 void rows_avx2(const EstepGroup<T>& g, int64_t r0, int64_t r1, T* s) {
  rows_impl(g, r0, r1, s);
}
#endif
template <typename T>
void rows_baseline(const EstepGroup<T>& g, int64_t r0, int64_t r1, T* s) {
  rows_impl(g, r0, r1, s);
}

template <typename T>
void dispatch(const EstepGroup<T>& g, int64_t r0, int64_t r1, T* s) {
#ifdef DGA_X86_BUILDS
  switch (cpu_isa()) {
    case Isa::kAvx512: rows_avx512(g, r0, r1, s); return;
    case Isa::kAvx2: rows_avx2(g, r0, r1, s); return;
    default: break;
  }
#endif
  rows_baseline(g, r0, r1, s);
}

}  // namespace

void estep_rows(const EstepGroup<float>& g, int64_t r0, int64_t r1, float* scratch) { dispatch(g, r0, r1, scratch); }
void estep_rows(const EstepGroup<double>& g, int64_t r0, int64_t r1, double* scratch) {
  dispatch(g, r0, r1, scratch);
}

const char* estep_isa() { return isa_name(cpu_isa()); }

}  // namespace dga_core
