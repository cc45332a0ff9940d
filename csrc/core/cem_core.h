// Torch-free core of one classification-EM step of the split test along a component's principal axis
// (dga_fast/mixture/axis_split.py, DESIGN §4), for one group: every point i, projected to t_i on the axis of its
// component k = comp_i, goes to the class s of largest score
//   base[k, s] − (0.5 · (t_i − mean[k, s])²) / var[k]        (the first largest; a NaN score counts as largest,
//                                                             as torch.argmax),
// and the counts, sums and sums of squares of t per (component, class) of the new partition are accumulated over
// the points in order (double), with the number of points whose class changed. The expression is evaluated in the
// reference's order, so (compiled without contraction, the default of ISO C++) the classes equal the reference's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace dga_core {

// t, comp, prev, cls: [n]; base, mean: [K, m]; var: [K]; cnt, s1, s2: [K, m] (zeroed by the caller).
// comp values must lie in [0, K) (the op checks). Returns the number of points with cls != prev.
inline int64_t cem_assign(const double* t, const int64_t* comp, const int64_t* prev, int64_t n, int64_t m,
                          const double* base, const double* mean, const double* var, int64_t* cls, double* cnt,
                          double* s1, double* s2) {
  int64_t changed = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = comp[i];
    const double* b = base + k * m;
    const double* mu = mean + k * m;
    const double v = var[k];
    int64_t best = 0;
    double top = 0.0;
    for (int64_t s = 0; s < m; ++s) {
      const double d = t[i] - mu[s];
      const double score = b[s] - (0.5 * (d * d)) / v;
      bool take;
      if (s == 0) take = true;
      else if (std::isnan(top)) take = false;         // a NaN already holds (the first NaN wins)
      else if (std::isnan(score)) take = true;
      else take = score > top;                        // ties keep the first
      if (take) {
        best = s;
        top = score;
      }
    }
    cls[i] = best;
    changed += best != prev[i];
    const int64_t key = k * m + best;
    cnt[key] += 1.0;
    s1[key] += t[i];
    s2[key] += t[i] * t[i];
  }
  return changed;
}

// t [n] = q_kᵀ(x_i − μ_k) of one group's points x [n, D], k = labels[i] (in [0, K): the op checks), means and q
// [K, D]; summed over d in order, in double.
template <typename T>
inline void axis_project(const T* x, const int64_t* labels, int64_t n, int64_t D, const T* means, const T* q,
                         double* t) {
  for (int64_t i = 0; i < n; ++i) {
    const T* xi = x + i * D;
    const T* mu = means + labels[i] * D;
    const T* qk = q + labels[i] * D;
    double acc = 0.0;
    for (int64_t d = 0; d < D; ++d)
      acc += (static_cast<double>(xi[d]) - static_cast<double>(mu[d])) * static_cast<double>(qk[d]);
    t[i] = acc;
  }
}

// Up to `iters` CEM steps of one group from the partition cls [n] whose statistics are cnt, s1, s2 [K, m] (updated
// in place, as cls): before each step the class means s1 / max(cnt, 1), the pooled variance per component
// max(Σ_s max(s2 − (cnt·mean)·mean, 0) / max(Σ_s cnt, 1), v_floor[k]) and the log weights
// log(max(cnt, 1) / max(Σ_s cnt, 1)) (−inf for an empty class), as dga_fast/mixture/axis_split.py; stops after a
// step that changed no class (a fixed point: more steps would change nothing). scratch: 5·K·m + K doubles and n
// int64 (cls_next). Returns the number of steps taken.
inline int cem_iterate(const double* t, const int64_t* comp, int64_t n, int64_t K, int64_t m, const double* v_floor,
                       int iters, int64_t* cls, double* cnt, double* s1, double* s2, double* scratch,
                       int64_t* cls_next) {
  const int64_t Km = K * m;
  double* base = scratch;
  double* mean = base + Km;
  double* c2 = mean + Km;
  double* a1 = c2 + Km;
  double* a2 = a1 + Km;
  double* var = a2 + Km;
  int steps = 0;
  while (steps < iters) {
    for (int64_t k = 0; k < K; ++k) {
      double within = 0.0, total = 0.0;
      for (int64_t s = 0; s < m; ++s) total += cnt[k * m + s];
      for (int64_t s = 0; s < m; ++s) {
        const int64_t i = k * m + s;
        const double c = cnt[i];
        mean[i] = s1[i] / std::max(c, 1.0);
        within += std::max(s2[i] - c * mean[i] * mean[i], 0.0);
        base[i] = c > 0 ? std::log(std::max(c, 1.0) / std::max(total, 1.0)) : -INFINITY;
      }
      var[k] = std::max(within / std::max(total, 1.0), v_floor[k]);
    }
    for (int64_t i = 0; i < Km; ++i) c2[i] = a1[i] = a2[i] = 0.0;
    const int64_t changed = cem_assign(t, comp, cls, n, m, base, mean, var, cls_next, c2, a1, a2);
    ++steps;
    for (int64_t i = 0; i < n; ++i) cls[i] = cls_next[i];
    for (int64_t i = 0; i < Km; ++i) cnt[i] = c2[i], s1[i] = a1[i], s2[i] = a2[i];
    if (changed == 0) break;
  }
  return steps;
}

}  // namespace dga_core
