/// \file
/// \brief Instruction-set levels: what this translation unit was compiled for, what the CPU has, and
/// which one kernels use (with an override for tests, benchmarks and users).
///
/// lowbit ranks x86 instruction sets as a ladder of levels; a level includes every level below it:
///
///   isa::scalar       portable C++ (every platform)
///   isa::sse42        SSE4.2 (with SSSE3, SSE4.1, POPCNT)                         Nehalem+
///   isa::avx2         AVX2 + FMA + F16C + BMI2                                   Haswell+, Zen 1+
///   isa::avx512       AVX-512 F + BW + DQ + VL                                    Skylake-SP+, Zen 4+
///   isa::avx512_vnni  avx512 + VNNI + VBMI + BF16                                 Sapphire Rapids+, Zen 4+
///
/// `avx512_vnni` is the "modern AVX-512" level: int8 dot products (vpdpbusd), byte permutes
/// (vpermb / vpermt2b) and bf16 conversions and dot products. CPUs with only part of it (Ice Lake
/// has VNNI and VBMI but no BF16, Cooper Lake BF16 and VNNI but no VBMI) run the avx512 level.
///
/// A level is *compiled* when this translation unit's compiler flags allow its instructions
/// (e.g. -mavx512f -mavx512bw -mavx512dq -mavx512vl for avx512), *supported* when it is compiled
/// and the CPU and the operating system (which must save the AVX / AVX-512 register state) have it.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "../core/error.hpp"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define LOWBIT_ARCH_X86 1
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

// Which levels this translation unit can hold, from the compiler's feature macros. (MSVC does not
// define the SSE macros; /arch:AVX2 and /arch:AVX512 imply the lower levels there.)
#if defined(LOWBIT_ARCH_X86)
#if defined(__SSE4_2__) || defined(__AVX2__)
#define LOWBIT_COMPILED_SSE42 1
#endif
#if defined(__AVX2__) && (defined(__FMA__) || defined(_MSC_VER)) && (defined(__F16C__) || defined(_MSC_VER)) && \
    (defined(__BMI2__) || defined(_MSC_VER))
#define LOWBIT_COMPILED_AVX2 1
#endif
#if defined(LOWBIT_COMPILED_AVX2) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__)
#define LOWBIT_COMPILED_AVX512 1
#endif
#if defined(LOWBIT_COMPILED_AVX512) && defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && defined(__AVX512BF16__)
#define LOWBIT_COMPILED_AVX512_VNNI 1
#endif
#endif

namespace lowbit {

/// An instruction-set level; each includes the ones before it (see the file comment).
enum class isa : int { scalar = 0, sse42 = 1, avx2 = 2, avx512 = 3, avx512_vnni = 4 };

/// Every level, lowest first.
inline constexpr isa all_isas[] = {isa::scalar, isa::sse42, isa::avx2, isa::avx512, isa::avx512_vnni};

/// "scalar", "sse42", "avx2", "avx512", "avx512_vnni": the names benchmarks and messages use.
constexpr const char* isa_name(isa path) noexcept {
  switch (path) {
    case isa::scalar: return "scalar";
    case isa::sse42: return "sse42";
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
    case isa::avx512_vnni: return "avx512_vnni";
  }
  return "unknown";
}

/// The level named `name` (as isa_name spells it), or nothing.
inline std::optional<isa> parse_isa(const std::string& name) noexcept {
  for (isa path : all_isas)
    if (name == isa_name(path)) return path;
  return std::nullopt;
}

/// True when this translation unit's compiler flags allow `path`'s instructions.
constexpr bool isa_compiled(isa path) noexcept {
  switch (path) {
    case isa::scalar: return true;
#if defined(LOWBIT_COMPILED_SSE42)
    case isa::sse42: return true;
#endif
#if defined(LOWBIT_COMPILED_AVX2)
    case isa::avx2: return true;
#endif
#if defined(LOWBIT_COMPILED_AVX512)
    case isa::avx512: return true;
#endif
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
    case isa::avx512_vnni: return true;
#endif
    default: return false;
  }
}

/// The highest level the compiler flags allow (pure header use dispatches statically to it).
constexpr isa compiled_best_isa() noexcept {
  isa best = isa::scalar;
  for (isa path : all_isas)
    if (isa_compiled(path)) best = path;
  return best;
}

/// The CPU features lowbit looks at, read once with cpuid and xgetbv.
struct cpu_features {
  bool sse42 = false, ssse3 = false, sse41 = false, popcnt = false;
  bool avx = false, avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512vnni = false, avx512vbmi = false, avx512bf16 = false;
  bool os_avx = false;     ///< the OS saves ymm state (XCR0 bits 1, 2)
  bool os_avx512 = false;  ///< the OS saves opmask and zmm state (XCR0 bits 5, 6, 7)
};

namespace detail {

#if defined(LOWBIT_ARCH_X86)
inline void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4]) noexcept {
#if defined(_MSC_VER) && !defined(__clang__)
  int r[4];
  __cpuidex(r, static_cast<int>(leaf), static_cast<int>(subleaf));
  for (int i = 0; i < 4; ++i) regs[i] = static_cast<uint32_t>(r[i]);
#else
  __cpuid_count(leaf, subleaf, regs[0], regs[1], regs[2], regs[3]);
#endif
}

inline uint64_t xgetbv0() noexcept {
#if defined(_MSC_VER) && !defined(__clang__)
  return _xgetbv(0);
#else
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));  // no -mxsave needed
  return (static_cast<uint64_t>(edx) << 32) | eax;
#endif
}
#endif

inline cpu_features detect_cpu_features() noexcept {
  cpu_features f;
#if defined(LOWBIT_ARCH_X86)
  uint32_t r[4] = {0, 0, 0, 0};
  cpuid(0, 0, r);
  const uint32_t max_leaf = r[0];
  if (max_leaf < 1) return f;
  cpuid(1, 0, r);
  const uint32_t ecx1 = r[2];
  f.ssse3 = ecx1 & (1u << 9);
  f.fma = ecx1 & (1u << 12);
  f.sse41 = ecx1 & (1u << 19);
  f.sse42 = ecx1 & (1u << 20);
  f.popcnt = ecx1 & (1u << 23);
  const bool osxsave = ecx1 & (1u << 27);
  f.avx = ecx1 & (1u << 28);
  f.f16c = ecx1 & (1u << 29);
  if (osxsave) {
    const uint64_t xcr0 = xgetbv0();
    f.os_avx = (xcr0 & 0x6) == 0x6;
    f.os_avx512 = f.os_avx && (xcr0 & 0xE0) == 0xE0;
  }
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    const uint32_t max_subleaf = r[0], ebx7 = r[1], ecx7 = r[2];
    f.avx2 = ebx7 & (1u << 5);
    f.bmi2 = ebx7 & (1u << 8);
    f.avx512f = ebx7 & (1u << 16);
    f.avx512dq = ebx7 & (1u << 17);
    f.avx512bw = ebx7 & (1u << 30);
    f.avx512vl = ebx7 & (1u << 31);
    f.avx512vbmi = ecx7 & (1u << 1);
    f.avx512vnni = ecx7 & (1u << 11);
    if (max_subleaf >= 1) {
      cpuid(7, 1, r);
      f.avx512bf16 = r[0] & (1u << 5);
    }
  }
#endif
  return f;
}

}  // namespace detail

/// The features of the CPU this process runs on (detected once, thread-safe).
inline const cpu_features& cpu() noexcept {
  static const cpu_features features = detail::detect_cpu_features();
  return features;
}

/// True when the CPU (and OS) can run `path`, whether or not it is compiled here.
inline bool cpu_has(isa path) noexcept {
  const cpu_features& f = cpu();
  const bool sse42 = f.sse42 && f.sse41 && f.ssse3 && f.popcnt;
  const bool avx2 = sse42 && f.avx && f.os_avx && f.avx2 && f.fma && f.f16c && f.bmi2;
  const bool avx512 = avx2 && f.os_avx512 && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl;
  switch (path) {
    case isa::scalar: return true;
    case isa::sse42: return sse42;
    case isa::avx2: return avx2;
    case isa::avx512: return avx512;
    case isa::avx512_vnni: return avx512 && f.avx512vnni && f.avx512vbmi && f.avx512bf16;
  }
  return false;
}

/// Compiled here and runnable on this CPU.
inline bool isa_supported(isa path) noexcept { return isa_compiled(path) && cpu_has(path); }

/// The levels compiled here, lowest first.
inline std::vector<isa> compiled_isas() {
  std::vector<isa> out;
  for (isa path : all_isas)
    if (isa_compiled(path)) out.push_back(path);
  return out;
}

/// The levels compiled here that this CPU runs, lowest first: what tests loop over.
inline std::vector<isa> supported_isas() {
  std::vector<isa> out;
  for (isa path : all_isas)
    if (isa_supported(path)) out.push_back(path);
  return out;
}

/// The highest supported level, ignoring overrides.
inline isa detected_best_isa() noexcept {
  isa best = isa::scalar;
  for (isa path : all_isas)
    if (isa_supported(path)) best = path;
  return best;
}

namespace detail {
// -1: no override; otherwise the forced level. The LOWBIT_ISA environment variable (an isa_name)
// sets the initial value: the highest supported level not above the named one.
inline std::atomic<int>& isa_override() noexcept {
  static std::atomic<int> forced{[] {
    const char* env = std::getenv("LOWBIT_ISA");
    if (env == nullptr || *env == '\0') return -1;
    const std::optional<isa> wanted = parse_isa(env);
    if (!wanted) return -1;
    int level = 0;
    for (isa path : all_isas)
      if (isa_supported(path) && static_cast<int>(path) <= static_cast<int>(*wanted)) level = static_cast<int>(path);
    return level;
  }()};
  return forced;
}
}  // namespace detail

/// The level kernels use when none is passed: the forced one (force_isa, LOWBIT_ISA) if any,
/// else the highest supported one.
inline isa best_isa() noexcept {
  const int forced = detail::isa_override().load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<isa>(forced) : detected_best_isa();
}

/// Makes best_isa() return `path` (nullopt: back to detection) for the whole process; throws
/// lowbit::error if `path` is not supported here. Returns the previous override.
inline std::optional<isa> force_isa(std::optional<isa> path) {
  if (path) {
    LOWBIT_CHECK(isa_supported(*path), "force_isa: " << isa_name(*path) << " is not supported here (compiled: "
                                                     << (isa_compiled(*path) ? "yes" : "no") << ", cpu: "
                                                     << (cpu_has(*path) ? "yes" : "no") << ")");
  }
  const int previous = detail::isa_override().exchange(path ? static_cast<int>(*path) : -1);
  return previous >= 0 ? std::optional<isa>(static_cast<isa>(previous)) : std::nullopt;
}

/// Forces a level for the lifetime of the object (tests), restoring the previous override after.
class scoped_isa {
 public:
  explicit scoped_isa(isa path) : previous_(force_isa(path)) {}
  ~scoped_isa() { detail::isa_override().store(previous_ ? static_cast<int>(*previous_) : -1); }
  scoped_isa(const scoped_isa&) = delete;
  scoped_isa& operator=(const scoped_isa&) = delete;

 private:
  std::optional<isa> previous_;
};

}  // namespace lowbit
