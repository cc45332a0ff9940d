// Unit tests of the batched Jacobi eigendecomposition (csrc/core/jacobi_core.*): for random symmetric matrices
// of sizes 1 … 33 (float and double), V diag(λ) Vᵀ reproduces the matrix, V is orthonormal, λ ascends; zero,
// diagonal and repeated-eigenvalue matrices; a matrix's result is the same alone and in any lane of a batch; the
// leading eigenvectors alone (top < D) equal the full run's.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../core/jacobi_core.h"
#include "check.h"

using namespace dga_core;

// W [M, D, D]: random symmetric, plus (m = 1) zero, (m = 2) diagonal with a repeated value, (m = 3) 2·I
static std::vector<double> make(int64_t M, int64_t D, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd;
  std::vector<double> W(static_cast<size_t>(M * D * D));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        double v = nd(rng);
        if (m == 1) v = 0.0;
        if (m == 2) v = i == j ? (i % 3 == 0 ? 5.0 : static_cast<double>(i)) : 0.0;
        if (m == 3) v = i == j ? 2.0 : 0.0;
        W[(m * D + i) * D + j] = W[(m * D + j) * D + i] = v;
      }
  return W;
}

template <typename T>
static void check_size(int64_t M, int64_t D, double tol) {
  auto Wd = make(M, D, static_cast<unsigned>(D * 7 + M));
  std::vector<T> W(Wd.begin(), Wd.end()), ev(static_cast<size_t>(M * D)), V(static_cast<size_t>(M * D * D));
  std::vector<uint8_t> ok(static_cast<size_t>(M));
  jacobi_eigh(W.data(), M, D, 0, ev.data(), V.data(), ok.data());
  for (int64_t m = 0; m < M; ++m) {
    CHECK(ok[m] == 1);
    double norm = 0.0;
    for (int64_t k = 0; k < D * D; ++k) norm += Wd[m * D * D + k] * Wd[m * D * D + k];
    norm = std::sqrt(norm) + 1e-300;
    for (int64_t j = 0; j + 1 < D; ++j) CHECK(ev[m * D + j] <= ev[m * D + j + 1]);
    double rec = 0.0, orth = 0.0;
    for (int64_t a = 0; a < D; ++a)
      for (int64_t b = 0; b < D; ++b) {
        double s = 0.0, o = 0.0;
        for (int64_t j = 0; j < D; ++j) {
          s += double(V[(m * D + a) * D + j]) * double(ev[m * D + j]) * double(V[(m * D + b) * D + j]);
          o += double(V[(m * D + j) * D + a]) * double(V[(m * D + j) * D + b]);
        }
        rec = std::fmax(rec, std::fabs(s - Wd[(m * D + a) * D + b]) / norm);
        orth = std::fmax(orth, std::fabs(o - (a == b ? 1.0 : 0.0)));
      }
    CHECK(rec < tol);
    CHECK(orth < tol);
  }
  // only the `top` leading eigenvectors, rebuilt from the logged rotations: the same eigenvalues (bit for bit)
  // and the full run's last `top` columns up to rounding
  for (int64_t top : {int64_t{1}, int64_t{3}, D - 1}) {
    if (top < 1 || top >= D) continue;
    std::vector<T> ev2(static_cast<size_t>(M * D)), V2(static_cast<size_t>(M * D * top));
    std::vector<uint8_t> ok2(static_cast<size_t>(M));
    jacobi_eigh(W.data(), M, D, top, ev2.data(), V2.data(), ok2.data());
    CHECK(std::memcmp(ev2.data(), ev.data(), sizeof(T) * M * D) == 0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < D; ++k)
        for (int64_t o = 0; o < top; ++o)
          CHECK(std::fabs(double(V2[(m * D + k) * top + o]) - double(V[(m * D + k) * D + D - top + o])) < tol);
  }
  // matrix 0 alone equals matrix 0 as lane 5 of the batch (bit for bit)
  if (M > 5) {
    std::vector<T> ev1(static_cast<size_t>(D)), V1(static_cast<size_t>(D * D));
    uint8_t ok1 = 0;
    jacobi_eigh(W.data() + 5 * D * D, 1, D, 0, ev1.data(), V1.data(), &ok1);
    CHECK(std::memcmp(ev1.data(), ev.data() + 5 * D, sizeof(T) * D) == 0);
    CHECK(std::memcmp(V1.data(), V.data() + 5 * D * D, sizeof(T) * D * D) == 0);
  }
}

int main() {
  for (int64_t D : {1, 2, 3, 7, 16, 32, 33})
    for (int64_t M : {1, 5, 19}) {
      check_size<float>(M, D, 1e-5);
      check_size<double>(M, D, 1e-13);
    }
  if (failures) std::fprintf(stderr, "%d failures\n", failures);
  return failures ? 1 : 0;
}
