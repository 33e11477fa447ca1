/// \file
/// \brief Arch tags that kernels are templated on, and dispatch from a run-time isa to a tag.
///
/// A kernel is a template over a tag (`template <class Arch> ...`). Each tag names its level
/// (`Arch::level`) and, for SIMD levels, the xsimd architecture its batches use
/// (`typename Arch::xsimd_arch`); instructions xsimd lacks (VNNI, VBMI byte permutes, BF16) live
/// in intrinsic helpers guarded by the compiler's feature macros. Only tags whose level is
/// compiled in this translation unit are defined as usable (`Arch::compiled`), and dispatch()
/// instantiates the functor only for those, so a non-x86 build sees only scalar_tag.
#pragma once

#include <type_traits>
#include <utility>

#include "isa.hpp"

#if defined(LOWBIT_COMPILED_SSE42)
#include <xsimd/xsimd.hpp>
#endif

namespace lowbit {
namespace arch {

/// Portable C++: no xsimd arch (kernels write plain loops for it).
struct scalar_tag {
  static constexpr isa level = isa::scalar;
  static constexpr bool compiled = true;
};

#if defined(LOWBIT_COMPILED_SSE42)
/// SSE4.2 (128-bit).
struct sse42_tag {
  static constexpr isa level = isa::sse42;
  static constexpr bool compiled = true;
  using xsimd_arch = xsimd::sse4_2;
};
#endif

#if defined(LOWBIT_COMPILED_AVX2)
/// AVX2 + FMA + F16C + BMI2 (256-bit).
struct avx2_tag {
  static constexpr isa level = isa::avx2;
  static constexpr bool compiled = true;
  using xsimd_arch = xsimd::fma3<xsimd::avx2>;
};
#endif

#if defined(LOWBIT_COMPILED_AVX512)
/// AVX-512 F/BW/DQ/VL (512-bit).
struct avx512_tag {
  static constexpr isa level = isa::avx512;
  static constexpr bool compiled = true;
  using xsimd_arch = xsimd::avx512bw;
};
#endif

#if defined(LOWBIT_COMPILED_AVX512_VNNI)
/// AVX-512 + VNNI + VBMI + BF16: same xsimd arch as avx512_tag (xsimd 8 has no VNNI arch type);
/// kernels use the extra instructions through intrinsic helpers.
struct avx512_vnni_tag {
  static constexpr isa level = isa::avx512_vnni;
  static constexpr bool compiled = true;
  using xsimd_arch = xsimd::avx512bw;
};
#endif

/// The tag of the compiled level `Level` (only valid for compiled levels).
template <isa Level>
struct tag_of;
template <>
struct tag_of<isa::scalar> {
  using type = scalar_tag;
};
#if defined(LOWBIT_COMPILED_SSE42)
template <>
struct tag_of<isa::sse42> {
  using type = sse42_tag;
};
#endif
#if defined(LOWBIT_COMPILED_AVX2)
template <>
struct tag_of<isa::avx2> {
  using type = avx2_tag;
};
#endif
#if defined(LOWBIT_COMPILED_AVX512)
template <>
struct tag_of<isa::avx512> {
  using type = avx512_tag;
};
#endif
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
template <>
struct tag_of<isa::avx512_vnni> {
  using type = avx512_vnni_tag;
};
#endif

/// The tag of the highest level the compiler flags allow (static dispatch, pure header use).
using best_compiled_tag = typename tag_of<compiled_best_isa()>::type;

/// True for the tag types above.
template <class T>
struct is_tag : std::false_type {};
template <>
struct is_tag<scalar_tag> : std::true_type {};
#if defined(LOWBIT_COMPILED_SSE42)
template <>
struct is_tag<sse42_tag> : std::true_type {};
#endif
#if defined(LOWBIT_COMPILED_AVX2)
template <>
struct is_tag<avx2_tag> : std::true_type {};
#endif
#if defined(LOWBIT_COMPILED_AVX512)
template <>
struct is_tag<avx512_tag> : std::true_type {};
#endif
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
template <>
struct is_tag<avx512_vnni_tag> : std::true_type {};
#endif

}  // namespace arch

/// Calls `f(Tag{})` with the tag of `path` and returns its result. `path` must be compiled here
/// (isa_compiled); whether the CPU runs it is the caller's business (use isa_supported or
/// best_isa()). A level that is not compiled raises lowbit::error.
template <class F>
decltype(auto) dispatch(isa path, F&& f) {
  switch (path) {
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
    case isa::avx512_vnni: return std::forward<F>(f)(arch::avx512_vnni_tag{});
#endif
#if defined(LOWBIT_COMPILED_AVX512)
    case isa::avx512: return std::forward<F>(f)(arch::avx512_tag{});
#endif
#if defined(LOWBIT_COMPILED_AVX2)
    case isa::avx2: return std::forward<F>(f)(arch::avx2_tag{});
#endif
#if defined(LOWBIT_COMPILED_SSE42)
    case isa::sse42: return std::forward<F>(f)(arch::sse42_tag{});
#endif
    case isa::scalar: return std::forward<F>(f)(arch::scalar_tag{});
    default: break;
  }
  raise_error(std::string("dispatch: the ") + isa_name(path) +
              " path is not compiled into this translation unit (compile with its -m flags)");
}

}  // namespace lowbit
