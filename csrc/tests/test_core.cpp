// Unit tests of the torch-free core (no framework: each CHECK prints and counts a failure).
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "../core/dyga_core.h"
#include "check.h"

using namespace dga_core;

static void test_spread() {
  // 2-D points: component 0 gets (0,0) and (3,4) around mean (0,0); component 1 is empty
  std::vector<float> x = {0, 0, 3, 4};
  std::vector<int64_t> labels = {0, 0};
  std::vector<float> means = {0, 0, 10, 10};
  std::vector<int64_t> counts(2);
  std::vector<double> spread(2);
  CHECK(mixture_spread(x.data(), labels.data(), means.data(), 2, 2, 2, counts.data(), spread.data()) == Status::kOk);
  CHECK(counts[0] == 2 && counts[1] == 0);
  CHECK(std::fabs(spread[0] - 2.5) < 1e-12 && spread[1] == 0.0);
  labels[1] = 2;   // out of range
  CHECK(mixture_spread(x.data(), labels.data(), means.data(), 2, 2, 2, counts.data(), spread.data()) ==
        Status::kBadLabel);
  labels[1] = -1;
  CHECK(mixture_spread(x.data(), labels.data(), means.data(), 2, 2, 2, counts.data(), spread.data()) ==
        Status::kBadLabel);
  CHECK(mixture_spread(x.data(), labels.data(), means.data(), 2, 0, 2, counts.data(), spread.data()) ==
        Status::kBadSize);
  CHECK(mixture_spread(nullptr, labels.data(), means.data(), 2, 2, 2, counts.data(), spread.data()) ==
        Status::kNullPointer);
  // N = 0: everything empty
  CHECK(mixture_spread(nullptr, nullptr, means.data(), 0, 2, 2, counts.data(), spread.data()) == Status::kOk);
  CHECK(counts[0] == 0 && spread[0] == 0.0);
}

static void test_split() {
  const int64_t K = 6;
  std::vector<uint8_t> active = {1, 1, 0, 1, 0, 0};
  std::vector<double> spread = {0.3, 0.5, 9.0, 0.5, 0.0, 0.0};   // slots 1 and 3 tie, slot 2 inactive
  std::vector<int64_t> counts = {100, 100, 100, 100, 0, 0};
  std::vector<int64_t> src(K);
  std::vector<int8_t> sign(K);
  int64_t n = -1;
  CHECK(split_plan(active.data(), spread.data(), counts.data(), K, 0.1, 6, 10, src.data(), sign.data(), &n) ==
        Status::kOk);
  CHECK(n == 3);                                    // 3 candidates, 3 free slots, room 3
  CHECK(src[2] == 1 && src[4] == 3 && src[5] == 0);  // widest first, ties by slot index, lowest free slots
  CHECK(sign[1] == 1 && sign[3] == 1 && sign[0] == 1 && sign[2] == -1 && sign[4] == -1 && sign[5] == -1);
  // max_components limits the room and the usable free slots
  CHECK(split_plan(active.data(), spread.data(), counts.data(), K, 0.1, 4, 10, src.data(), sign.data(), &n) ==
        Status::kOk);
  CHECK(n == 1 && src[2] == 1 && sign[1] == 1 && sign[2] == -1 && sign[0] == 0 && src[4] == 4);
  // min_count and threshold exclude candidates; NaN spread never splits
  spread[1] = std::numeric_limits<double>::quiet_NaN();
  counts[3] = 5;
  CHECK(split_plan(active.data(), spread.data(), counts.data(), K, 0.1, 6, 10, src.data(), sign.data(), &n) ==
        Status::kOk);
  CHECK(n == 1 && src[2] == 0 && sign[0] == 1);
  // K = 1, full: nothing to do
  uint8_t one = 1;
  double s1 = 5.0;
  int64_t c1 = 100, src1 = -1;
  int8_t sg1 = 9;
  CHECK(split_plan(&one, &s1, &c1, 1, 0.1, 1, 1, &src1, &sg1, &n) == Status::kOk);
  CHECK(n == 0 && src1 == 0 && sg1 == 0);
  CHECK(split_plan(&one, &s1, &c1, 0, 0.1, 1, 1, &src1, &sg1, &n) == Status::kBadSize);
  CHECK(split_plan(nullptr, &s1, &c1, 1, 0.1, 1, 1, &src1, &sg1, &n) == Status::kNullPointer);
}

static void test_filter() {
  const int64_t K = 5;
  std::vector<uint8_t> active = {1, 0, 1, 1, 1};
  std::vector<double> mass = {50, 99, 3, 20, 10};
  std::vector<uint8_t> keep(K);
  std::vector<int64_t> order(K);
  CHECK(filter_plan(active.data(), mass.data(), K, 10.0, keep.data(), order.data()) == Status::kOk);
  const int64_t want[] = {0, 3, 4, 1, 2};
  for (int64_t k = 0; k < K; ++k) CHECK(order[k] == want[k]);
  CHECK(keep[0] && keep[1] && keep[2] && !keep[3] && !keep[4]);
  // nothing passes: the heaviest active slot is kept (slot 1 is heavier but inactive)
  CHECK(filter_plan(active.data(), mass.data(), K, 1000.0, keep.data(), order.data()) == Status::kOk);
  CHECK(order[0] == 0 && keep[0] && !keep[1]);
  // ties: the first maximum; NaN counts as largest (torch.argmax)
  mass = {7, 0, 7, 7, 7};
  CHECK(filter_plan(active.data(), mass.data(), K, 1000.0, keep.data(), order.data()) == Status::kOk);
  CHECK(order[0] == 0);
  mass[3] = std::numeric_limits<double>::quiet_NaN();
  CHECK(filter_plan(active.data(), mass.data(), K, 1000.0, keep.data(), order.data()) == Status::kOk);
  CHECK(order[0] == 3 && keep[0] && !keep[1]);
  CHECK(filter_plan(active.data(), mass.data(), 0, 1.0, keep.data(), order.data()) == Status::kBadSize);
}

int main() {
  test_spread();
  test_split();
  test_filter();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("dyga_core: all checks passed\n");
  return 0;
}
