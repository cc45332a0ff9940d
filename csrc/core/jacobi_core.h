// Torch-free batched eigendecomposition of small symmetric matrices (the HDDC M-step's D × D covariances, DESIGN
// §3) by cyclic Jacobi rotations, several matrices at once: the SIMD lanes are matrices (kJacobiBytes of them
// per vector), so every step of the method is one vector operation whatever D, and no lane waits on another.
//
// Per matrix (Golub & Van Loan, Alg. 8.5.3, with Rutishauser's update): entries at the rounding level of the
// largest diagonal entry (|a| <= eps_T · max(0, max a_ii)) are set to zero first (as dga_fast/mixture/mstep.py,
// robust_eigh, does before LAPACK); then sweep over the pairs p < q in row order;
// rotate (p, q) when |a_pq| > eps_T · ‖A‖_F; a matrix whose sweep rotated nothing has converged and is left
// alone from then on (its later rotations are the identity, exactly), so a matrix's result never depends on
// the other matrices of its batch or on its lane. Eigenvalues come out ascending (ties in the diagonal's order)
// with their eigenvectors as columns, as torch.linalg.eigh; signs may differ from LAPACK's. Only the lower
// triangle of the input is read. Accurate to a few eps_T · ‖A‖ in the eigenvalues.
#pragma once

#include <cstdint>

namespace dga_core {

constexpr int64_t kJacobiBytes = 64;      // one AVX-512 register: 16 float or 8 double matrices per pass
constexpr int kJacobiMaxSweeps = 40;      // far above the ~6–10 sweeps a 32 × 32 covariance takes

// Where it beats LAPACK per matrix (MKL syevd, one thread, measured on an AVX-512 CPU, µs per matrix):
// float32 D = 16: 5.2 vs 13.8, D = 32: 34 vs 50, D = 48: 103 vs 101; float64 D = 24: 32 vs 38, D = 32: 73 vs 68.
inline bool jacobi_preferred(int64_t D, bool is_double) { return D <= (is_double ? 24 : 40); }

// W [M, D, D] (lower triangle read), evals [M, D] ascending, evecs [M, D, top] the eigenvectors of the `top`
// largest eigenvalues, ascending (column o for eigenvalue D − top + o; top <= 0 or > D: all, [M, D, D]). With
// top < D the rotations are logged and only the wanted eigenvectors rebuilt from them (the HDDC M-step needs the
// d_max leading ones). converged [M]: 1, or 0 for a matrix still rotating after kJacobiMaxSweeps (its outputs
// are then the last iterate; the caller solves it another way). A matrix with a non-finite entry gets NaN
// eigenpairs (as torch.linalg.eigh), never an exception.
void jacobi_eigh(const float* W, int64_t M, int64_t D, int64_t top, float* evals, float* evecs, uint8_t* converged);
void jacobi_eigh(const double* W, int64_t M, int64_t D, int64_t top, double* evals, double* evecs,
                 uint8_t* converged);

}  // namespace dga_core
