// The CPU's instruction-set build choice (see isa.h).
#include "isa.h"

#include <cstdlib>
#include <cstring>

namespace dga_core {
namespace {

Isa hardware_isa() {
#ifdef DGA_X86_BUILDS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kBaseline;
}

Isa detect_isa() {
  const Isa hw = hardware_isa();
  const char* env = std::getenv("DGA_FAST_CPU_ISA");
  if (env && std::strcmp(env, "baseline") == 0) return Isa::kBaseline;
  if (env && std::strcmp(env, "avx2") == 0 && hw == Isa::kAvx512) return Isa::kAvx2;
  return hw;
}

}  // namespace

Isa cpu_isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace dga_core
