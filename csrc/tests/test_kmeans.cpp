// Unit tests of the Lloyd step core (csrc/core/kmeans_core.*) against a direct evaluation: nearest centre (the
// first on ties, here exact duplicates of a centre), counts and sums, row ranges that split the rows anywhere
// (the sums of two ranges add up to the whole), K = 1, odd sizes, float and double input.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../core/kmeans_core.h"
#include "check.h"

using namespace dga_core;

// the first nearest of the K centres c [K, D] to the row xi, by direct differences in double
template <typename T>
static int64_t nearest(const T* xi, const std::vector<T>& c, int64_t K, int64_t D) {
  int64_t best = 0;
  double top = 0.0;
  for (int64_t k = 0; k < K; ++k) {
    double d = 0.0;
    for (int64_t j = 0; j < D; ++j) {
      const double diff = double(xi[j]) - double(c[k * D + j]);
      d += diff * diff;
    }
    if (k == 0 || d < top) best = k, top = d;
  }
  return best;
}

// the centres transposed to [D, kmeans_padded(K)] in double, as the op gives them to kmeans_assign
template <typename T>
static std::vector<double> transposed(const std::vector<T>& c, int64_t K, int64_t D) {
  const int64_t Kp = kmeans_padded(K);
  std::vector<double> ct(static_cast<size_t>(D * Kp), 0.0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < D; ++j) ct[j * Kp + k] = static_cast<double>(c[k * D + j]);
  return ct;
}

template <typename T>
static void check_case(int64_t n, int64_t K, int64_t D, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd;
  std::vector<T> x(static_cast<size_t>(n * D)), c(static_cast<size_t>(K * D));
  for (auto& v : c) v = static_cast<T>(nd(rng));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < D; ++j)   // every 5th row is a copy of centre 0's twin (centre K-1 = centre 0)
      x[i * D + j] = i % 5 == 0 ? c[j] : static_cast<T>(nd(rng));
  if (K > 1)
    for (int64_t j = 0; j < D; ++j) c[(K - 1) * D + j] = c[j];
  const std::vector<double> ct = transposed(c, K, D);
  std::vector<int64_t> labels(static_cast<size_t>(n), -1);
  std::vector<double> counts(K, 0.0), sums(K * D, 0.0), counts2(K, 0.0), sums2(K * D, 0.0);
  kmeans_assign(x.data(), 0, n, D, ct.data(), K, labels.data(), counts.data(), sums.data());
  const int64_t cut = n / 3;
  kmeans_assign(x.data(), 0, cut, D, ct.data(), K, labels.data(), counts2.data(), sums2.data());
  kmeans_assign(x.data(), cut, n, D, ct.data(), K, labels.data(), counts2.data(), sums2.data());
  std::vector<double> wc(K, 0.0), ws(K * D, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t best = nearest(x.data() + i * D, c, K, D);
    CHECK(labels[i] == best);
    wc[best] += 1.0;
    for (int64_t j = 0; j < D; ++j) ws[best * D + j] += double(x[i * D + j]);
  }
  for (int64_t k = 0; k < K; ++k) {
    CHECK(counts[k] == wc[k] && counts2[k] == wc[k]);
    for (int64_t j = 0; j < D; ++j) {
      CHECK(std::fabs(sums[k * D + j] - ws[k * D + j]) <= 1e-9 * (1.0 + std::fabs(ws[k * D + j])));
      CHECK(std::fabs(sums2[k * D + j] - ws[k * D + j]) <= 1e-9 * (1.0 + std::fabs(ws[k * D + j])));
    }
  }
}

// the Lloyd loop: no update (max_iter 0) gives kmeans_assign's labels; at the end every row is at its nearest
// final centre when the loop stopped by itself
template <typename T>
static void check_loop(int64_t n, int64_t K, int64_t D, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd;
  std::vector<T> x(static_cast<size_t>(n * D)), c(static_cast<size_t>(K * D));
  for (auto& v : x) v = static_cast<T>(nd(rng));
  for (auto& v : c) v = static_cast<T>(0.3 * nd(rng));
  std::vector<T> c0 = c;
  std::vector<int64_t> labels(static_cast<size_t>(n)), first(static_cast<size_t>(n));
  CHECK(kmeans_lloyd(x.data(), n, D, c0.data(), K, 0, 7, first.data()) == 0);
  CHECK(c0 == c);
  std::vector<int64_t> step(static_cast<size_t>(n));
  std::vector<double> counts(K, 0.0), sums(K * D, 0.0);
  kmeans_assign(x.data(), 0, n, D, transposed(c, K, D).data(), K, step.data(), counts.data(), sums.data());
  CHECK(first == step);
  const int it = kmeans_lloyd(x.data(), n, D, c.data(), K, 50, 7, labels.data());
  CHECK(it >= 0 && it <= 50);
  if (it < 50)
    for (int64_t i = 0; i < n; ++i) CHECK(labels[i] == nearest(x.data() + i * D, c, K, D));
}

int main() {
  for (int64_t n : {1, 20, 61})
    for (int64_t K : {1, 3, 9}) {
      check_loop<float>(n, K, 5, static_cast<unsigned>(n * K));
      check_loop<double>(n, K, 5, static_cast<unsigned>(n * K + 1));
    }
  unsigned seed = 1;
  for (int64_t n : {1, 3, 37, 260})
    for (int64_t K : {1, 2, 7, 9, 17})
      for (int64_t D : {1, 3, 32}) {
        check_case<float>(n, K, D, seed++);
        check_case<double>(n, K, D, seed++);
      }
  if (failures) std::fprintf(stderr, "%d failures\n", failures);
  return failures ? 1 : 0;
}
