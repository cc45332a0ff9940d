// Torch-free core of the mixture core's normaliser statistics (dga_fast/mixture/normalise.py): per group, the
// mean of the rows (refined by a second pass, so its own rounding does not count as spread), the sum of squared
// deviations from it and the sum of squares, all in double, every column's sums taken over the rows in order.
#pragma once

#include <cstdint>

namespace dga_core {

// x [N, D] (one group) -> shift [D] (the refined mean), dev2 = Σ‖x − shift‖², sq = Σ‖x‖².
// acc: scratch of D doubles. N may be 0 (shift = NaN, as 0/0).
template <typename T>
void group_moments(const T* x, int64_t N, int64_t D, double* shift, double* dev2, double* sq, double* acc) {
  for (int64_t d = 0; d < D; ++d) acc[d] = 0.0;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(x[i * D + d]);
  for (int64_t d = 0; d < D; ++d) shift[d] = acc[d] / static_cast<double>(N);
  for (int64_t d = 0; d < D; ++d) acc[d] = 0.0;
  for (int64_t i = 0; i < N; ++i)                                   // the first pass's rounding error
    for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(x[i * D + d]) - shift[d];
  for (int64_t d = 0; d < D; ++d) shift[d] += acc[d] / static_cast<double>(N);
  double v = 0.0, s = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    double vi = 0.0, si = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const double xv = static_cast<double>(x[i * D + d]);
      const double z = xv - shift[d];
      vi += z * z;
      si += xv * xv;
    }
    v += vi;
    s += si;
  }
  *dev2 = v;
  *sq = s;
}

}  // namespace dga_core
