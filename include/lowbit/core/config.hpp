/// \file
/// \brief Compiler and platform configuration shared by every lowbit header.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#define LOWBIT_VERSION_MAJOR 0
#define LOWBIT_VERSION_MINOR 1
#define LOWBIT_VERSION_PATCH 0

// Scalar code that CUDA kernels share with the CPU library is marked LOWBIT_HD.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define LOWBIT_HD __host__ __device__
#else
#define LOWBIT_HD
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LOWBIT_ALWAYS_INLINE inline __attribute__((always_inline))
#define LOWBIT_RESTRICT __restrict__
#else
#define LOWBIT_ALWAYS_INLINE inline
#define LOWBIT_RESTRICT
#endif

#if defined(__has_builtin)
#if __has_builtin(__builtin_bit_cast)
#define LOWBIT_HAS_BUILTIN_BIT_CAST 1
#endif
#endif

// try/catch that also compiles with -fno-exceptions (then the catch block is dead code).
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define LOWBIT_HAS_EXCEPTIONS 1
#define LOWBIT_TRY try
#define LOWBIT_CATCH_ALL catch (...)
#define LOWBIT_RETHROW throw
#else
#define LOWBIT_TRY if (true)
#define LOWBIT_CATCH_ALL else
#define LOWBIT_RETHROW (void)0
#endif

// Around SIMD kernel code: GCC 12 reports its own AVX-512 intrinsics' deliberately undefined
// pass-through operands (_mm512_undefined_epi32) as uninitialized once inlined (GCC bug 105593,
// fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#define LOWBIT_SIMD_DIAGNOSTICS_BEGIN \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define LOWBIT_SIMD_DIAGNOSTICS_END _Pragma("GCC diagnostic pop")
#else
#define LOWBIT_SIMD_DIAGNOSTICS_BEGIN
#define LOWBIT_SIMD_DIAGNOSTICS_END
#endif

namespace lowbit {

/// std::bit_cast for C++17: constexpr where the compiler offers __builtin_bit_cast (GCC >= 11,
/// Clang >= 9, NVCC with either as host compiler), memcpy otherwise.
template <class To, class From>
LOWBIT_HD constexpr To bit_cast(const From& from) noexcept {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs types of one size");
  static_assert(std::is_trivially_copyable<To>::value && std::is_trivially_copyable<From>::value,
                "bit_cast needs trivially copyable types");
#if defined(LOWBIT_HAS_BUILTIN_BIT_CAST)
  return __builtin_bit_cast(To, from);
#else
  To to{};
  std::memcpy(&to, &from, sizeof(To));
  return to;
#endif
}

}  // namespace lowbit
