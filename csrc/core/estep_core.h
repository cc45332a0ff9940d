// Torch-free core of the fused HDDC E-step on CPU (DESIGN §3): for one group, rows [r0, r1) of X, the cost
//   C_k(x) = Σ_j w_kj y_kj² + ‖x − μ_k‖² / b_k + c_k,   y_k = Q_kᵀ (x − μ_k),
// its log-sum-exp over the slots and the log-responsibilities, in one pass over X and with nothing of size
// N·K·D materialised (only a tile of TILE rows is held: X transposed, the centred tile, the tile's costs).
//
// Vectorised across rows: in every inner loop the TILE rows are the lanes, so each row's sums run in the same
// order (over d, then j) whatever the tile, the thread count or the instruction set, and the compiler vectorises
// them without reassociating anything. Inactive slots have c_k = +inf. As the PyTorch reference
// (dga_fast/ops/hddc_estep/reference.py): log p_k = −C_k / 2, the log-sum-exp subtracts the largest log p_k and clamps
// every difference at −80 before exp, summed in slot order.
#pragma once

#include <cstdint>

namespace dga_core {

// Rows per tile (the vector lanes of the inner loops): 16 floats = two AVX2 or one AVX-512 register.
constexpr int64_t kEstepTile = 16;

// Pointers of one group; layouts row-major: x [N, D], means [K, D], q [K, D, DM] (columns = Q_k),
// w [K, DM], inv_b [K], cst [K]; outputs log_resp [N, K], loglik [N].
template <typename T>
struct EstepGroup {
  const T* x; const T* means; const T* q; const T* w; const T* inv_b; const T* cst;
  int64_t N, K, D, DM;
  T* log_resp; T* loglik;
};

// Scratch of one thread: TILE * (2 * D + K) elements of T.
inline int64_t estep_scratch_size(int64_t D, int64_t K) { return kEstepTile * (2 * D + K); }

// Rows [r0, r1) of one group; scratch as above. Dispatches once per call to the widest build of the kernel
// the CPU runs (AVX-512, AVX2 + FMA, or the compiler's baseline).
void estep_rows(const EstepGroup<float>& g, int64_t r0, int64_t r1, float* scratch);
void estep_rows(const EstepGroup<double>& g, int64_t r0, int64_t r1, double* scratch);

// Which build estep_rows runs on this CPU: "avx512", "avx2" or "baseline" (the widest the CPU runs, or a
// narrower one named by the environment variable DGA_FAST_CPU_ISA=baseline|avx2, read once).
const char* estep_isa();

}  // namespace dga_core
