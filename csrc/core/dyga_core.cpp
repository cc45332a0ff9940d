#include "dyga_core.h"

#include <cmath>
#include <vector>
#include <algorithm>

namespace dga_core {

const char* status_message(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kBadSize: return "a size (K, N or D) is out of range";
    case Status::kBadLabel: return "a hard label is outside [0, K)";
    case Status::kNullPointer: return "a null pointer was passed";
  }
  return "unknown status";
}

Status mixture_spread(const float* x, const int64_t* labels, const float* means, int64_t N, int64_t K, int64_t D,
                      int64_t* counts, double* spread) {
  if (N < 0 || K < 1 || D < 1) return Status::kBadSize;
  if ((N > 0 && (x == nullptr || labels == nullptr)) || means == nullptr || counts == nullptr ||
      spread == nullptr)
    return Status::kNullPointer;
  for (int64_t i = 0; i < N; ++i)
    if (labels[i] < 0 || labels[i] >= K) return Status::kBadLabel;
  std::vector<double> sums(static_cast<size_t>(K), 0.0);
  for (int64_t k = 0; k < K; ++k) counts[k] = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t k = labels[i];
    const float* xi = x + i * D;
    const float* mk = means + k * D;
    // float32 distances, as the reference's norm (and vectorisable); sums in double
    sums[static_cast<size_t>(k)] += std::sqrt(static_cast<double>(sq_distance(xi, mk, D)));
    counts[k] += 1;
  }
  for (int64_t k = 0; k < K; ++k)
    spread[k] = sums[static_cast<size_t>(k)] / static_cast<double>(std::max<int64_t>(counts[k], 1));
  return Status::kOk;
}

}  // namespace dga_core
