// Torch-free core of one Lloyd step (dga_fast/mixture/init.py, the k-means refinement of the initial partition),
// for one group and a range of its rows: every row x_i goes to the centre of least squared distance
//   d_ik = Σ_j (x_ij − c_kj)²          (direct differences in double, j in order: no expansion cancellation;
//                                        the first least; a NaN distance counts as least, as torch.argmin),
// and the counts and sums of x per new label are accumulated over the rows in order (double). Each row is
// decided alone, so a row's label never depends on the other rows or groups. The distances of one row to all
// centres are one vector loop over the centres (kmeans_padded(K) columns), built for AVX-512, AVX2 and the
// baseline (isa.h).
#pragma once

#include <cstdint>

namespace dga_core {

constexpr int64_t kKmeansLanes = 8;   // centres per vector block
inline int64_t kmeans_padded(int64_t K) { return (K + kKmeansLanes - 1) / kKmeansLanes * kKmeansLanes; }

// x [n, D] (one group; rows r0 .. r1-1 are read), ct [D, kmeans_padded(K)] the centres transposed in double
// (padding columns any finite value), K >= 1; labels [n] written for those rows; counts [K] and sums [K, D]
// (double, zeroed by the caller) accumulate.
void kmeans_assign(const float* x, int64_t r0, int64_t r1, int64_t D, const double* ct, int64_t K,
                   int64_t* labels, double* counts, double* sums);
void kmeans_assign(const double* x, int64_t r0, int64_t r1, int64_t D, const double* ct, int64_t K,
                   int64_t* labels, double* counts, double* sums);

// Lloyd on one group (dga_fast/mixture/init.py, lloyd): labels [N] and centers [K, D] (in: the seeds; out: the
// last centres) after at most max_iter updates, stopping when no label changes (a fixed point: further steps
// would change nothing). Each step is kmeans_assign over chunks of `chunk` rows, the chunks' counts and sums added
// in order and rounded to T, an emptied cluster keeping its centre: the same numbers as max_iter calls of the
// op kmeans_assign with the centre update of the reference in between. Returns the updates taken.
int kmeans_lloyd(const float* x, int64_t N, int64_t D, float* centers, int64_t K, int max_iter, int64_t chunk,
                 int64_t* labels);
int kmeans_lloyd(const double* x, int64_t N, int64_t D, double* centers, int64_t K, int max_iter, int64_t chunk,
                 int64_t* labels);

}  // namespace dga_core
