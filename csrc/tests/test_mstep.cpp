// Unit tests of the M-step sums core (csrc/core/mstep_core.*) against a direct double-precision evaluation:
// responsibilities at and below eps skipped, untouched slots never written, the upper triangle, row ranges that
// split a group anywhere (the sums of two ranges add up to the whole), float and double input.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../core/mstep_core.h"
#include "check.h"

using namespace dga_core;

constexpr double kEps = 1e-7;

struct Case {
  int64_t N, K, D;
  std::vector<double> x, resp, means;
};

// slot K-1 gets no significant responsibility (all at eps exactly or below): it must stay untouched
static Case make_case(int64_t N, int64_t K, int64_t D, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  Case c{N, K, D, {}, {}, {}};
  for (int64_t i = 0; i < N * D; ++i) c.x.push_back(3.0 * nd(rng) + 1.0);
  for (int64_t i = 0; i < K * D; ++i) c.means.push_back(nd(rng));
  for (int64_t i = 0; i < N; ++i) {
    std::vector<double> r(K);
    double s = 0;
    for (int64_t k = 0; k + 1 < K; ++k) s += (r[k] = (ud(rng) < 0.4 ? 0.0 : ud(rng)));
    for (int64_t k = 0; k + 1 < K; ++k) c.resp.push_back(s > 0 ? r[k] / s : 0.0);
    c.resp.push_back(i % 2 ? kEps : 0.5 * kEps);
  }
  return c;
}

template <typename T>
static void check_case(const Case& c, double tol) {
  const int64_t N = c.N, K = c.K, D = c.D;
  std::vector<T> x(c.x.begin(), c.x.end()), resp(c.resp.begin(), c.resp.end()), means(c.means.begin(), c.means.end());
  const MstepGroup<T> g{x.data(), resp.data(), means.data(), N, K, D};
  // oracle in double from the same (rounded) inputs
  std::vector<double> nk(K, 0), first(K * D, 0), S(K * D * D, 0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < K; ++k) {
      const double r = resp[i * K + k];
      if (!(resp[i * K + k] > T(kEps))) continue;
      nk[k] += r;
      for (int64_t a = 0; a < D; ++a) {
        first[k * D + a] += r * x[i * D + a];
        for (int64_t b = 0; b < D; ++b)
          S[(k * D + a) * D + b] += r * (double(x[i * D + a]) - means[k * D + a]) * (double(x[i * D + b]) - means[k * D + b]);
      }
    }
  for (int64_t cut : {int64_t(0), N / 3, N - 1, N}) {   // two ranges [0, cut) and [cut, N)
    const int64_t Dp = mstep_padded_dim(D);
    std::vector<double> nk1(K, 0), f1(K * D, 0), S1(K * D * Dp, -7), S2(K * D * Dp, -7);
    std::vector<double> ybuf(mstep_scatter_scratch(K, D));
    std::vector<int64_t> nbuf(K);
    std::vector<uint8_t> t1(K, 0), t2(K, 0);
    mstep_moments(g, 0, cut, kEps, nk1.data(), f1.data());
    mstep_moments(g, cut, N, kEps, nk1.data(), f1.data());
    mstep_scatter(g, 0, cut, kEps, S1.data(), t1.data(), ybuf.data(), nbuf.data());
    mstep_scatter(g, cut, N, kEps, S2.data(), t2.data(), ybuf.data(), nbuf.data());
    for (int64_t k = 0; k < K; ++k) {
      CHECK(std::fabs(nk1[k] - nk[k]) <= tol * (1 + std::fabs(nk[k])));
      for (int64_t a = 0; a < D; ++a) CHECK(std::fabs(f1[k * D + a] - first[k * D + a]) <= tol * (1 + nk[k] * 4));
      const bool any = nk[k] > 0;
      CHECK((t1[k] || t2[k]) == any);
      for (int64_t j = 0; j < D * Dp; ++j) {   // untouched: never written
        if (!t1[k]) CHECK(S1[k * D * Dp + j] == -7);
        if (!t2[k]) CHECK(S2[k * D * Dp + j] == -7);
      }
      for (int64_t a = 0; a < D; ++a)   // the upper triangle
        for (int64_t b = a; b < D; ++b) {
          const int64_t j = (k * D + a) * Dp + b;
          const double s1 = t1[k] ? S1[j] : 0.0, s2 = t2[k] ? S2[j] : 0.0;
          CHECK(std::fabs(s1 + s2 - S[(k * D + a) * D + b]) <= tol * (1 + nk[k] * 16));
        }
    }
    CHECK(!t1[K - 1] && !t2[K - 1]);   // responsibilities at or below eps: skipped
  }
}

int main() {
  const int64_t shapes[][3] = {{1, 2, 1}, {37, 3, 5}, {300, 6, 32}, {129, 2, 33}};   // N, K, D
  for (const auto& s : shapes) {
    const Case c = make_case(s[0], s[1], s[2], unsigned(s[0] * 31 + s[2]));
    check_case<double>(c, 1e-12);
    check_case<float>(c, 1e-9);   // float inputs, double sums: as exact as the oracle on the same inputs
  }
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("mstep core: all checks passed\n");
  return failures ? 1 : 0;
}
