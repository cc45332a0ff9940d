// The one assertion of the native unit tests (no framework): a failed CHECK prints where and counts a failure;
// each test's main returns non-zero when `failures` is.
#pragma once

#include <cstdio>

static int failures = 0;
#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                                 \
    }                                                                             \
  } while (0)
