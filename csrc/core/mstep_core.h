// Torch-free core of the HDDC M-step's weighted sums on CPU (DESIGN §3), for one group and a range of its rows:
//   masses        n_k = Σ_i r_ik,
//   first moments m_k = Σ_i r_ik x_i,
//   scatter       S_k = Σ_i y_ik y_ikᵀ,  y_ik = √r_ik (x_i − μ_k)   (centred at given means: no cancellation),
// each over the rows with r_ik > eps only (as the PyTorch reference, dga_fast/mixture/mstep.py: a term below eps
// weighs less than float32 resolution of the sums it would join). One pass over the rows; each row meets only its
// significant slots, so nearly hard responsibilities cost about N·D² and never N·K·D².
//
// Accumulators are double for float and double input, every sum taken over the rows in order, so a group's sums
// depend on its rows alone (not on the other groups, the thread count or the instruction set). The op
// (csrc/mstep_op.cpp) cuts a group's rows into fixed chunks (csrc/op_chunks.h) and adds the chunks in order.
#pragma once

#include <cstdint>

namespace dga_core {

// Pointers of one group, row-major: x [N, D], resp [N, K], means [K, D] (unused by mstep_moments).
template <typename T>
struct MstepGroup {
  const T* x; const T* resp; const T* means;
  int64_t N, K, D;
};

// Rows [r0, r1): nk [K] and first [K, D] (double, zeroed by the caller) accumulate the masses and first moments.
void mstep_moments(const MstepGroup<float>& g, int64_t r0, int64_t r1, double eps, double* nk, double* first);
void mstep_moments(const MstepGroup<double>& g, int64_t r0, int64_t r1, double eps, double* nk, double* first);

// The scatter's layout and scratch: S holds, per slot, the upper triangle of a D × D matrix in rows of Dp =
// mstep_padded_dim(D) doubles (S [K, D, Dp]; entries b < a and b ≥ D are unspecified); the scratch buffers up
// to kMstepRank centred rows per slot (mstep_scatter_scratch(K, D) doubles, a spare row included) and their
// counts (K int64).
constexpr int64_t kMstepLanes = 8;   // columns per vector block (one AVX-512 register of doubles)
constexpr int64_t kMstepRank = 8;    // rows per rank-k update of a slot's matrix
inline int64_t mstep_padded_dim(int64_t D) { return (D + kMstepLanes - 1) / kMstepLanes * kMstepLanes; }
// One spare row at the end: GCC 12 (-O2, AVX-512) compiles rank_tile's loop over the buffered rows with a 256-bit
// load that also reads the first doubles of the row after the last one (unused lanes of a vector it then
// permutes); for the last slot that row is past the buffer, and at a page end it faulted (SIGSEGV, seen in
// benchmarks/throughput.py). The spare row keeps that read inside the allocation; its values are never used.
inline int64_t mstep_scatter_scratch(int64_t K, int64_t D) { return (K * kMstepRank + 1) * mstep_padded_dim(D); }

// Rows [r0, r1): S (double, layout above) accumulates the scatter matrices, each slot's rows added in row order.
// touched [K] (zeroed by the caller): a slot's matrix is zeroed at its first significant row and its flag set;
// an untouched slot's matrix is never written.
void mstep_scatter(const MstepGroup<float>& g, int64_t r0, int64_t r1, double eps, double* S, uint8_t* touched,
                   double* ybuf, int64_t* nbuf);
void mstep_scatter(const MstepGroup<double>& g, int64_t r0, int64_t r1, double eps, double* S, uint8_t* touched,
                   double* ybuf, int64_t* nbuf);

}  // namespace dga_core
