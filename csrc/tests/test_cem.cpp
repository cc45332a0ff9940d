// Unit tests of the split test's CEM step (csrc/core/cem_core.h): known assignments, first of tied scores, an
// empty class (base −inf) never chosen, a NaN score taken as the largest (as torch.argmax), the class statistics
// and the change count.
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "../core/cem_core.h"
#include "check.h"

using namespace dga_core;

int main() {
  const double inf = std::numeric_limits<double>::infinity();
  {   // one component, classes at -1 and +1, unit variance, equal weights: points go to the nearer mean
    const std::vector<double> t = {-2.0, -0.1, 0.0, 0.3, 5.0}, base = {0.0, 0.0}, mean = {-1.0, 1.0}, var = {1.0};
    const std::vector<int64_t> comp(5, 0), prev = {0, 0, 1, 1, 0};
    std::vector<int64_t> cls(5);
    std::vector<double> cnt(2), s1(2), s2(2);
    const int64_t changed = cem_assign(t.data(), comp.data(), prev.data(), 5, 2, base.data(), mean.data(),
                                       var.data(), cls.data(), cnt.data(), s1.data(), s2.data());
    CHECK(cls[0] == 0 && cls[1] == 0 && cls[2] == 0 && cls[3] == 1 && cls[4] == 1);   // 0.0: a tie, the first
    CHECK(changed == 2);
    CHECK(cnt[0] == 3 && cnt[1] == 2 && s1[0] == -2.1 && s1[1] == 5.3);
    CHECK(std::fabs(s2[0] - (4.0 + 0.01)) < 1e-15 && std::fabs(s2[1] - (0.09 + 25.0)) < 1e-15);
  }
  {   // two components, m = 3; an empty class (base −inf) is never taken; a NaN mean makes a NaN score: taken
    const std::vector<double> t = {0.0, 0.0}, base = {-inf, 0.0, 0.0, 0.0, 0.0, 0.0};
    const std::vector<double> mean = {0.0, 9.0, 8.0, 1.0, std::nan(""), 0.0}, var = {1.0, 1.0};
    const std::vector<int64_t> comp = {0, 1}, prev = {1, 1};
    std::vector<int64_t> cls(2);
    std::vector<double> cnt(6), s1(6), s2(6);
    const int64_t changed = cem_assign(t.data(), comp.data(), prev.data(), 2, 3, base.data(), mean.data(),
                                       var.data(), cls.data(), cnt.data(), s1.data(), s2.data());
    CHECK(cls[0] == 2 && cls[1] == 1 && changed == 1);
    CHECK(cnt[2] == 1 && cnt[4] == 1 && cnt[0] == 0 && cnt[3] == 0);
  }
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("cem core: all checks passed\n");
  return failures ? 1 : 0;
}
