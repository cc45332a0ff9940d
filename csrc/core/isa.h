// Which instruction-set build of a CPU kernel to run (csrc/core/estep_core.cpp, csrc/core/mstep_core.cpp): each
// kernel is one template compiled three times (AVX-512, AVX2 + FMA, the compiler's baseline) and dispatches once
// per call on cpu_isa(), the widest build this CPU runs, or a narrower one named by the environment variable
// DGA_FAST_CPU_ISA=baseline|avx2 (read once per process: tests and benchmarks of the other builds).
#pragma once

namespace dga_core {

enum class Isa { kBaseline, kAvx2, kAvx512 };

Isa cpu_isa();
const char* isa_name(Isa isa);   // "avx512", "avx2" or "baseline"

}  // namespace dga_core

#if defined(__x86_64__) && defined(__GNUC__)
#define DGA_X86_BUILDS 1
#define DGA_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define DGA_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

#if defined(__GNUC__)
#define DGA_INLINE inline __attribute__((always_inline))
#define DGA_PRAGMA(x) _Pragma(#x)
// a loop of compile-time length unrolled completely (register-resident accumulators)
#define DGA_UNROLL DGA_PRAGMA(GCC unroll 64)
#else
#define DGA_INLINE inline
#define DGA_UNROLL
#endif
