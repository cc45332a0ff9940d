// Unit tests of the normaliser statistics core (csrc/core/moments_core.h): known answers, a constant group
// (exactly zero deviation even when its mean is not representable), float and double input.
#include <cmath>
#include <cstdio>
#include <vector>

#include "../core/moments_core.h"
#include "check.h"

using namespace dga_core;

int main() {
  {   // rows (1, 2), (3, 6): mean (2, 4), deviations 1+4+1+4 = 10, squares 1+4+9+36 = 50
    const std::vector<float> x = {1, 2, 3, 6};
    double shift[2], dev2, sq, acc[2];
    group_moments(x.data(), 2, 2, shift, &dev2, &sq, acc);
    CHECK(shift[0] == 2.0 && shift[1] == 4.0 && dev2 == 10.0 && sq == 50.0);
  }
  {   // 1001 equal rows of 0.1: the refined mean is 0.1 to the last bit and the deviation exactly 0
    const std::vector<double> x(1001 * 3, 0.1);
    double shift[3], dev2, sq, acc[3];
    group_moments(x.data(), 1001, 3, shift, &dev2, &sq, acc);
    CHECK(shift[0] == 0.1 && shift[2] == 0.1 && dev2 == 0.0 && std::fabs(sq - 1001 * 3 * 0.01) < 1e-12);
  }
  {   // N = 0: no rows read, the mean is NaN (0/0), the sums 0
    double shift[1], dev2 = 1, sq = 1, acc[1];
    group_moments(static_cast<const float*>(nullptr), 0, 1, shift, &dev2, &sq, acc);
    CHECK(std::isnan(shift[0]) && dev2 == 0.0 && sq == 0.0);
  }
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("moments core: all checks passed\n");
  return failures ? 1 : 0;
}
