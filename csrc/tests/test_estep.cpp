// Unit tests of the CPU E-step core (csrc/core/estep_core.*) against a direct double-precision evaluation of the
// same formula: tails of a tile, inactive slots, a subspace of dimension 0, float and double, every row range.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "../core/estep_core.h"
#include "check.h"

using namespace dga_core;

struct Case {
  int64_t N, K, D, DM;
  std::vector<double> x, means, q, w, inv_b, cst;
};

static Case make_case(int64_t N, int64_t K, int64_t D, int64_t DM, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> ud(0.2, 2.0);
  Case c{N, K, D, DM, {}, {}, {}, {}, {}, {}};
  for (int64_t i = 0; i < N * D; ++i) c.x.push_back(nd(rng));
  for (int64_t i = 0; i < K * D; ++i) c.means.push_back(nd(rng));
  for (int64_t i = 0; i < K * D * DM; ++i) c.q.push_back(nd(rng) / std::sqrt(double(D)));
  for (int64_t i = 0; i < K * DM; ++i) c.w.push_back(ud(rng) - 1.0);
  for (int64_t k = 0; k < K; ++k) {
    c.inv_b.push_back(ud(rng));
    c.cst.push_back(k % 3 == 1 ? std::numeric_limits<double>::infinity() : 3.0 * nd(rng));   // slot 1: inactive
  }
  return c;
}

// log p [N, K] and log-likelihood [N], directly in double
static void direct(const Case& c, std::vector<double>& lp, std::vector<double>& ll) {
  lp.assign(c.N * c.K, 0.0);
  ll.assign(c.N, 0.0);
  for (int64_t i = 0; i < c.N; ++i) {
    double top = -std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < c.K; ++k) {
      double zz = 0, ys = 0;
      std::vector<double> z(c.D);
      for (int64_t d = 0; d < c.D; ++d) zz += (z[d] = c.x[i * c.D + d] - c.means[k * c.D + d]) * z[d];
      for (int64_t j = 0; j < c.DM; ++j) {
        double y = 0;
        for (int64_t d = 0; d < c.D; ++d) y += c.q[(k * c.D + d) * c.DM + j] * z[d];
        ys += c.w[k * c.DM + j] * y * y;
      }
      lp[i * c.K + k] = std::isinf(c.cst[k]) ? -std::numeric_limits<double>::infinity()
                                             : -0.5 * (zz * c.inv_b[k] + c.cst[k] + ys);
      top = std::max(top, lp[i * c.K + k]);
    }
    double s = 0;
    for (int64_t k = 0; k < c.K; ++k) s += std::exp(std::max(lp[i * c.K + k] - top, -80.0));
    ll[i] = std::log(s) + top;
  }
}

template <typename T>
static void check_case(const Case& c, double tol) {
  auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
  // the direct evaluation on the inputs rounded to T
  Case r = c;
  for (auto* v : {&r.x, &r.means, &r.q, &r.w, &r.inv_b, &r.cst})
    for (auto& e : *v) e = static_cast<double>(static_cast<T>(e));
  std::vector<double> lp, ll;
  direct(r, lp, ll);
  auto x = cast(c.x), means = cast(c.means), q = cast(c.q), w = cast(c.w), ib = cast(c.inv_b), cst = cast(c.cst);
  std::vector<T> log_resp(c.N * c.K, T(7)), loglik(c.N, T(7));
  EstepGroup<T> g{x.data(), means.data(), q.data(), w.data(), ib.data(), cst.data(), c.N, c.K, c.D, c.DM,
                  log_resp.data(), loglik.data()};
  std::vector<T> scratch(estep_scratch_size(c.D, c.K));
  const int64_t mid = c.N / 3;                 // two calls on adjacent row ranges cover all rows
  estep_rows(g, 0, mid, scratch.data());
  estep_rows(g, mid, c.N, scratch.data());
  for (int64_t i = 0; i < c.N; ++i) {
    CHECK(std::fabs(loglik[i] - ll[i]) <= tol * (1.0 + std::fabs(ll[i])));
    for (int64_t k = 0; k < c.K; ++k) {
      const double want = lp[i * c.K + k] - ll[i];
      const double got = log_resp[i * c.K + k];
      if (std::isinf(want)) CHECK(std::isinf(got) && got < 0);
      else CHECK(std::fabs(got - want) <= tol * (1.0 + std::fabs(lp[i * c.K + k])));
    }
  }
}

int main() {
  std::printf("estep isa: %s\n", estep_isa());
  unsigned seed = 0;
  for (int64_t N : {1, 15, 16, 17, 40})
    for (int64_t K : {1, 3, 5})
      for (int64_t D : {1, 7, 32})
        for (int64_t DM : {0, 1, 3}) {
          const Case c = make_case(N, K, D, DM, ++seed);   // slot 0 is active: every row has an active slot
          check_case<double>(c, 1e-12);
          check_case<float>(c, 2e-5);
        }
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("estep core: all checks passed\n");
  return failures ? 1 : 0;
}
