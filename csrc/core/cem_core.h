// Torch-free core of one classification-EM step of the split test along a component's principal axis
// (dga_fast/mixture/axis_split.py, DESIGN §4), for one group: every point i, projected to t_i on the axis of its
// component k = comp_i, goes to the class s of largest score
//   base[k, s] − (0.5 · (t_i − mean[k, s])²) / var[k]        (the first largest; a NaN score counts as largest,
//                                                             as torch.argmax),
// and the counts, sums and sums of squares of t per (component, class) of the new partition are accumulated over
// the points in order (double), with the number of points whose class changed. The expression is evaluated in the
// reference's order, so (compiled without contraction, the default of ISO C++) the classes equal the reference's.
#pragma once

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

}  // namespace dga_core
