// torch.ops.dga_fast.{mstep_moments, mstep_scatter, batched_eigh}: the HDDC M-step on CPU tensors, float32 or
// float64. The weighted sums (core/mstep_core.h) run over fixed chunks of a group's rows in parallel
// (at::parallel_for over groups × chunks, op_chunks.h), the chunks added in order; the eigendecompositions of the small
// symmetric matrices run on slices of the batch in parallel: batched Jacobi (core/jacobi_core.h) for the small D
// where it is the faster, else LAPACK (at::linalg_eigh), also for a matrix Jacobi does not converge on.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "core/jacobi_core.h"
#include "core/mstep_core.h"
#include "op_checks.h"
#include "op_chunks.h"

namespace {

using dga_checks::check_cpu_float;
using dga_checks::check_device_dtype;
using dga_checks::check_points;
using dga_checks::check_sizes;
using dga_chunks::add_chunks;
using dga_chunks::chunks;
using dga_chunks::kRowChunk;

void check_x_resp(const at::Tensor& x, const at::Tensor& resp, const char* op) {
  check_points(x, op);
  check_device_dtype(resp, "resp", x, "x");
  TORCH_CHECK_VALUE(resp.dim() == 3 && resp.size(0) == x.size(0) && resp.size(1) == x.size(1) && resp.size(2) >= 1,
                    "resp must be [G, N, K] with K >= 1 and G, N as x ", x.sizes(), ", got ", resp.sizes());
}

template <typename T>
dga_core::MstepGroup<T> group(const at::Tensor& x, const at::Tensor& resp, const T* means, int64_t g) {
  const int64_t N = x.size(1), D = x.size(2), K = resp.size(2);
  return {x.data_ptr<T>() + g * N * D, resp.data_ptr<T>() + g * N * K, means ? means + g * K * D : nullptr, N, K, D};
}

// x [G, N, D], resp [G, N, K] -> nk [G, K], first [G, K, D] (x's dtype)
std::tuple<at::Tensor, at::Tensor> mstep_moments(const at::Tensor& x_in, const at::Tensor& resp_in, double eps) {
  check_x_resp(x_in, resp_in, "mstep_moments");
  auto x = x_in.contiguous(), resp = resp_in.contiguous();
  const int64_t G = x.size(0), N = x.size(1), D = x.size(2), K = resp.size(2), C = chunks(N);
  auto dbl = x.options().dtype(at::kDouble);
  auto nk = at::zeros({G, C, K}, dbl), first = at::zeros({G, C, K, D}, dbl);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mstep_moments", [&] {
    at::parallel_for(0, G * C, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t g = t / C, r0 = (t % C) * kRowChunk;
        dga_core::mstep_moments(group<scalar_t>(x, resp, nullptr, g), r0, std::min(N, r0 + kRowChunk),
                                eps, nk.data_ptr<double>() + t * K, first.data_ptr<double>() + t * K * D);
      }
    });
  });
  return {add_chunks(nk, x.scalar_type()), add_chunks(first, x.scalar_type())};
}

// x [G, N, D], resp [G, N, K], means [G, K, D] -> S [G, K, D, D] (x's dtype)
at::Tensor mstep_scatter(const at::Tensor& x_in, const at::Tensor& resp_in, const at::Tensor& means_in, double eps) {
  check_x_resp(x_in, resp_in, "mstep_scatter");
  const int64_t G = x_in.size(0), N = x_in.size(1), D = x_in.size(2), K = resp_in.size(2), C = chunks(N);
  check_device_dtype(means_in, "means", x_in, "x");
  check_sizes(means_in, {G, K, D}, "means", "[G, K, D]");
  auto x = x_in.contiguous(), resp = resp_in.contiguous(), means = means_in.contiguous();
  const int64_t Dp = dga_core::mstep_padded_dim(D), slot = D * Dp;
  auto part = at::empty({G, C, K, slot}, x.options().dtype(at::kDouble));   // a chunk's slot: written if touched
  std::vector<uint8_t> touched(static_cast<size_t>(G * C * K), 0);
  auto out = at::empty({G, K, D, D}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mstep_scatter", [&] {
    double* pp = part.data_ptr<double>();
    at::parallel_for(0, G * C, 1, [&](int64_t b, int64_t e) {
      std::vector<double> ybuf(dga_core::mstep_scatter_scratch(K, D));
      std::vector<int64_t> nbuf(K);
      for (int64_t t = b; t < e; ++t) {
        const int64_t g = t / C, r0 = (t % C) * kRowChunk;
        dga_core::mstep_scatter(group<scalar_t>(x, resp, means.data_ptr<scalar_t>(), g), r0,
                                std::min(N, r0 + kRowChunk), eps, pp + t * K * slot,
                                touched.data() + t * K, ybuf.data(), nbuf.data());
      }
    });
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, G * K, 1, [&](int64_t b, int64_t e) {   // chunks in order (untouched: 0), mirrored
      std::vector<double> acc(slot);
      for (int64_t gk = b; gk < e; ++gk) {
        const int64_t g = gk / K, k = gk % K;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t c = 0; c < C; ++c) {
          const int64_t id = (g * C + c) * K + k;
          if (!touched[id]) continue;
          const double* s = pp + id * slot;
          for (int64_t a = 0; a < D; ++a)
            for (int64_t j = a; j < D; ++j) acc[a * Dp + j] += s[a * Dp + j];
        }
        scalar_t* o = po + gk * D * D;
        for (int64_t a = 0; a < D; ++a)
          for (int64_t j = a; j < D; ++j) o[a * D + j] = o[j * D + a] = static_cast<scalar_t>(acc[a * Dp + j]);
      }
    });
  });
  return out;
}

// MKL's LAPACK results depend on the matrix's memory alignment (seen: the same 7 × 7 matrix alone and inside a
// batch differ in the last bits). at::linalg_eigh solves a copy of the batch, matrix m at m·D²·size bytes from a
// 64-byte aligned base: when that is a multiple of 64 every matrix is aligned alike (D = 8, 16, 32, ...), else
// the matrices are solved one at a time (each copy freshly aligned), so that a matrix's result never depends on
// the batch it came in.
bool aligned_in_batch(const at::Tensor& W) { return (W.size(1) * W.size(1) * W.element_size()) % 64 == 0; }

// W with the entries at the rounding level of each matrix's largest diagonal entry set to zero (the rule of
// core/jacobi_core.h and of robust_eigh in dga_fast/mixture/mstep.py)
at::Tensor zero_rounding_level(const at::Tensor& W) {
  const double eps = W.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon()
                                                    : std::numeric_limits<float>::epsilon();
  auto tiny = W.diagonal(0, -2, -1).amax(-1).clamp_min(0).mul(eps).view({-1, 1, 1});
  return at::where(W.abs() <= tiny, at::zeros_like(W), W);
}

// LAPACK on matrix m of Wz (zeroed as above) alone, again in float64 should it fail to converge (per matrix, so
// that no other matrix's result changes; still failing: raised); a non-finite matrix gets NaN eigenpairs. evecs
// [*, D, top] receives the last `top` columns.
void lapack_one(const at::Tensor& Wz, at::Tensor& evals, at::Tensor& evecs, int64_t m) {
  auto Wm = Wz.narrow(0, m, 1);
  const int64_t D = Wz.size(1), top = evecs.size(2);
  if (!at::isfinite(Wm).all().item<bool>()) {
    evals.narrow(0, m, 1).fill_(std::numeric_limits<double>::quiet_NaN());
    evecs.narrow(0, m, 1).fill_(std::numeric_limits<double>::quiet_NaN());
    return;
  }
  at::Tensor ev, vec;
  try {
    std::tie(ev, vec) = at::linalg_eigh(Wm);
  } catch (const c10::LinAlgError&) {
    std::tie(ev, vec) = at::linalg_eigh(Wm.to(at::kDouble));
  }
  evals.narrow(0, m, 1).copy_(ev);
  evecs.narrow(0, m, 1).copy_(vec.narrow(2, D - top, top));
}

// eigh of one slice of the batch: batched Jacobi (core/jacobi_core.h) where it is the faster (jacobi_preferred), a
// matrix it does not converge on by LAPACK; else LAPACK, the slice at once when aligned_in_batch and finite, else
// matrix by matrix
void eigh_slice(const at::Tensor& W, at::Tensor& evals, at::Tensor& evecs, int64_t b, int64_t e) {
  const int64_t D = W.size(1), top = evecs.size(2);
  if (dga_core::jacobi_preferred(D, W.scalar_type() == at::kDouble)) {
    std::vector<uint8_t> ok(static_cast<size_t>(e - b));
    AT_DISPATCH_FLOATING_TYPES(W.scalar_type(), "batched_eigh", [&] {
      dga_core::jacobi_eigh(W.data_ptr<scalar_t>() + b * D * D, e - b, D, top, evals.data_ptr<scalar_t>() + b * D,
                            evecs.data_ptr<scalar_t>() + b * D * top, ok.data());
    });
    for (int64_t m = b; m < e; ++m)
      if (!ok[static_cast<size_t>(m - b)]) {   // that matrix alone
        auto ev_m = evals.narrow(0, m, 1), vec_m = evecs.narrow(0, m, 1);
        lapack_one(zero_rounding_level(W.narrow(0, m, 1)), ev_m, vec_m, 0);
      }
    return;
  }
  auto Wz = zero_rounding_level(W.narrow(0, b, e - b));
  auto ev_s = evals.narrow(0, b, e - b), vec_s = evecs.narrow(0, b, e - b);
  if (aligned_in_batch(W) && at::isfinite(Wz).all().item<bool>()) {
    try {
      auto [ev, vec] = at::linalg_eigh(Wz);
      ev_s.copy_(ev);
      vec_s.copy_(vec.narrow(2, D - top, top));
      return;
    } catch (const c10::LinAlgError&) {
    }
  }
  for (int64_t m = 0; m < e - b; ++m) lapack_one(Wz, ev_s, vec_s, m);
}

// W [M, D, D] symmetric (its lower triangle is read) -> eigenvalues [M, D] ascending, eigenvectors [M, D, top]
// of the `top` largest, ascending (top <= 0 or > D: all D, as torch.linalg.eigh), with robust_eigh's contract:
// rounding-level entries zeroed first; a non-finite matrix gets NaN eigenpairs
std::tuple<at::Tensor, at::Tensor> batched_eigh(const at::Tensor& W_in, int64_t top) {
  check_cpu_float(W_in, "W", "batched_eigh");
  TORCH_CHECK_VALUE(W_in.dim() == 3 && W_in.size(1) == W_in.size(2), "W must be [M, D, D], got ", W_in.sizes());
  auto W = W_in.contiguous();
  const int64_t M = W.size(0), D = W.size(1);
  top = top <= 0 || top > D ? D : top;
  auto evals = at::empty({M, D}, W.options()), evecs = at::empty({M, D, top}, W.options());
  if (M == 0) return {evals, evecs};
  // one slice per thread: LAPACK runs single-threaded inside the parallel region
  const int64_t grain = std::max<int64_t>(1, (M + at::get_num_threads() - 1) / at::get_num_threads());
  at::parallel_for(0, M, grain, [&](int64_t b, int64_t e) { eigh_slice(W, evals, evecs, b, e); });
  return {evals, evecs};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dga_fast, m) {
  m.def("mstep_moments(Tensor x, Tensor resp, float eps) -> (Tensor, Tensor)");
  m.def("mstep_scatter(Tensor x, Tensor resp, Tensor means, float eps) -> Tensor");
  m.def("batched_eigh(Tensor W, int top=0) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dga_fast, CPU, m) {
  m.impl("mstep_moments", &mstep_moments);
  m.impl("mstep_scatter", &mstep_scatter);
  m.impl("batched_eigh", &batched_eigh);
}
