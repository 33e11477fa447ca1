/// \file
/// \brief Per-arch SIMD primitives that xsimd does not offer: unpacking 4/6/8-bit codes into 32-bit
/// lanes, 16-entry register table lookups, fp16 and bf16 conversions, streaming and partial stores.
///
/// `ops<Tag>` gathers them for one arch tag (see arch/dispatch.hpp). Arithmetic on the results is
/// written once over `xsimd::batch<T, typename Tag::xsimd_arch>` by the kernels; everything here is
/// a small, named helper around a few intrinsics, guarded by the compiler's feature macros.
///
/// Conventions shared by every arch:
///  - `lanes`: floats per batch. An unpack helper fills `N` batches of 32-bit lanes from the codes
///    of N * lanes consecutive elements (element order), reading at most the bytes it documents.
///  - 4-bit unpack: lane i holds code i in bits 0..3; the bits above are unspecified (the table
///    lookups ignore them).
///  - 6-bit unpack ("top-aligned"): lane i holds code i in bits 26..31; the bits below are
///    unspecified. An arithmetic right shift then sign-extends the code, a logical one isolates it.
///  - 8-bit unpack: lane i holds the code sign-extended (unpack8s) or zero-extended (unpack8u).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../arch/dispatch.hpp"
#include "../../core/config.hpp"

#if defined(LOWBIT_COMPILED_SSE42)
#include <immintrin.h>

#include <xsimd/xsimd.hpp>
#endif

// Forces inlining of a lambda in a kernel's hot loop: [&](auto j) LOWBIT_ALWAYS_INLINE_LAMBDA { ... }.
#if defined(__GNUC__) || defined(__clang__)
#define LOWBIT_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
#else
#define LOWBIT_ALWAYS_INLINE_LAMBDA
#endif

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

template <class Tag>
struct ops;  // specialized for every compiled SIMD tag below

#if defined(LOWBIT_COMPILED_SSE42)

namespace detail {
LOWBIT_ALWAYS_INLINE uint32_t load_u32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
LOWBIT_ALWAYS_INLINE uint64_t load_u64(const uint8_t* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
}  // namespace detail

// ------------------------------------------------------------------------------------------------
// SSE4.2: 4 floats a batch.
template <>
struct ops<arch::sse42_tag> {
  using A = arch::sse42_tag::xsimd_arch;
  using f32 = xsimd::batch<float, A>;
  using i32 = xsimd::batch<int32_t, A>;
  using u32 = xsimd::batch<uint32_t, A>;
  static constexpr std::size_t lanes = 4;

  static LOWBIT_ALWAYS_INLINE f32 as_f32(const i32& x) noexcept { return _mm_castsi128_ps(x); }
  static LOWBIT_ALWAYS_INLINE f32 as_f32(const u32& x) noexcept { return _mm_castsi128_ps(x); }
  static LOWBIT_ALWAYS_INLINE i32 as_i32(const f32& x) noexcept { return _mm_castps_si128(x); }
  static LOWBIT_ALWAYS_INLINE u32 as_u32(const f32& x) noexcept { return _mm_castps_si128(x); }
  static LOWBIT_ALWAYS_INLINE f32 to_f32(const i32& x) noexcept { return _mm_cvtepi32_ps(x); }
  /// c ? a : b lane by lane (see ops_avx512::select).
  static LOWBIT_ALWAYS_INLINE i32 select(const xsimd::batch_bool<int32_t, A>& c, const i32& a, const i32& b) noexcept {
    return xsimd::select(c, a, b);
  }

  /// 16 nibbles of 8 bytes as 16 byte indices in element order, each cleaned to 0..15.
  static LOWBIT_ALWAYS_INLINE __m128i nibble_indices(const uint8_t* p) noexcept {
    const __m128i x = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    const __m128i low = _mm_set1_epi8(0x0F);
    return _mm_unpacklo_epi8(_mm_and_si128(x, low), _mm_and_si128(_mm_srli_epi16(x, 4), low));
  }

  /// 16-entry float table as four pshufb byte tables: byte b of entry i is table[b][i].
  struct lut16 {
    __m128i byte[4];
  };
  static lut16 make_lut16(const float* values) noexcept {
    alignas(16) uint8_t bytes[4][16];
    for (int i = 0; i < 16; ++i) {
      uint32_t bits;
      std::memcpy(&bits, values + i, 4);
      for (int b = 0; b < 4; ++b) bytes[b][i] = static_cast<uint8_t>(bits >> (8 * b));
    }
    lut16 t;
    for (int b = 0; b < 4; ++b) t.byte[b] = _mm_load_si128(reinterpret_cast<const __m128i*>(bytes[b]));
    return t;
  }
  /// Looks up 16 byte indices (0..15): out[0..3] get the table's floats, in element order.
  static LOWBIT_ALWAYS_INLINE void lookup16x16(const lut16& t, __m128i idx, f32* out) noexcept {
    const __m128i b0 = _mm_shuffle_epi8(t.byte[0], idx), b1 = _mm_shuffle_epi8(t.byte[1], idx);
    const __m128i b2 = _mm_shuffle_epi8(t.byte[2], idx), b3 = _mm_shuffle_epi8(t.byte[3], idx);
    const __m128i lo01 = _mm_unpacklo_epi8(b0, b1), hi01 = _mm_unpackhi_epi8(b0, b1);
    const __m128i lo23 = _mm_unpacklo_epi8(b2, b3), hi23 = _mm_unpackhi_epi8(b2, b3);
    out[0] = _mm_castsi128_ps(_mm_unpacklo_epi16(lo01, lo23));
    out[1] = _mm_castsi128_ps(_mm_unpackhi_epi16(lo01, lo23));
    out[2] = _mm_castsi128_ps(_mm_unpacklo_epi16(hi01, hi23));
    out[3] = _mm_castsi128_ps(_mm_unpackhi_epi16(hi01, hi23));
  }

  /// 8-bit codes of N * 4 elements; reads N * 4 bytes.
  template <std::size_t N>
  static LOWBIT_ALWAYS_INLINE void unpack8s(const uint8_t* p, i32 (&out)[N]) noexcept {
    for (std::size_t c = 0; c < N; ++c)
      out[c] = _mm_cvtepi8_epi32(_mm_cvtsi32_si128(static_cast<int>(detail::load_u32(p + 4 * c))));
  }
  template <std::size_t N>
  static LOWBIT_ALWAYS_INLINE void unpack8u(const uint8_t* p, i32 (&out)[N]) noexcept {
    for (std::size_t c = 0; c < N; ++c)
      out[c] = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(static_cast<int>(detail::load_u32(p + 4 * c))));
  }

  /// 6-bit codes of 16 elements (12 bytes) top-aligned in four batches; reads 16 bytes.
  static constexpr std::size_t unpack6_read_bytes = 16;
  static LOWBIT_ALWAYS_INLINE void unpack6(const uint8_t* p, i32 (&out)[4]) noexcept {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // Lane m of batch j: bytes 2, 3 <- source bytes 3j + (0,0,1,2)[m] and the next one; the code
    // then sits at bit 16 + (0,6,4,2)[m], and a multiply by 2^(10 - that) moves it to bit 26.
    const __m128i mul = _mm_setr_epi32(1 << 10, 1 << 4, 1 << 6, 1 << 8);
    out[0] = _mm_mullo_epi32(_mm_shuffle_epi8(x, _mm_setr_epi8(-1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 1, 2, -1, -1, 2, 3)), mul);
    out[1] = _mm_mullo_epi32(_mm_shuffle_epi8(x, _mm_setr_epi8(-1, -1, 3, 4, -1, -1, 3, 4, -1, -1, 4, 5, -1, -1, 5, 6)), mul);
    out[2] = _mm_mullo_epi32(_mm_shuffle_epi8(x, _mm_setr_epi8(-1, -1, 6, 7, -1, -1, 6, 7, -1, -1, 7, 8, -1, -1, 8, 9)), mul);
    out[3] = _mm_mullo_epi32(
        _mm_shuffle_epi8(x, _mm_setr_epi8(-1, -1, 9, 10, -1, -1, 9, 10, -1, -1, 10, 11, -1, -1, 11, 12)), mul);
  }

  static LOWBIT_ALWAYS_INLINE void stream(float* p, const f32& v) noexcept { _mm_stream_ps(p, v); }

  /// 4 uint16 zero-extended to the lanes (bf16 bits, shifted up 16, are the float).
  static LOWBIT_ALWAYS_INLINE i32 load_u16(const uint16_t* p) noexcept {
    return _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }

  /// Lanes holding values in [0, 65535] stored as uint16 (all lanes).
  static LOWBIT_ALWAYS_INLINE void store_u16(uint16_t* p, const i32& v, bool streaming) noexcept {
    const __m128i packed = _mm_packus_epi32(v, v);
    if (streaming) {
      _mm_stream_si64(reinterpret_cast<long long*>(p), _mm_cvtsi128_si64(packed));
    } else {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(p), packed);
    }
  }
};

#endif  // LOWBIT_COMPILED_SSE42

#if defined(LOWBIT_COMPILED_AVX2)
// ------------------------------------------------------------------------------------------------
// AVX2: 8 floats a batch.
template <>
struct ops<arch::avx2_tag> {
  using A = arch::avx2_tag::xsimd_arch;
  using f32 = xsimd::batch<float, A>;
  using i32 = xsimd::batch<int32_t, A>;
  using u32 = xsimd::batch<uint32_t, A>;
  static constexpr std::size_t lanes = 8;

  static LOWBIT_ALWAYS_INLINE f32 as_f32(const i32& x) noexcept { return _mm256_castsi256_ps(x); }
  static LOWBIT_ALWAYS_INLINE f32 as_f32(const u32& x) noexcept { return _mm256_castsi256_ps(x); }
  static LOWBIT_ALWAYS_INLINE i32 as_i32(const f32& x) noexcept { return _mm256_castps_si256(x); }
  static LOWBIT_ALWAYS_INLINE u32 as_u32(const f32& x) noexcept { return _mm256_castps_si256(x); }
  static LOWBIT_ALWAYS_INLINE f32 to_f32(const i32& x) noexcept { return _mm256_cvtepi32_ps(x); }
  /// c ? a : b lane by lane (see ops_avx512::select).
  static LOWBIT_ALWAYS_INLINE i32 select(const xsimd::batch_bool<int32_t, A>& c, const i32& a, const i32& b) noexcept {
    return xsimd::select(c, a, b);
  }

  /// 4-bit codes of 32 elements (16 bytes) in four batches.
  static LOWBIT_ALWAYS_INLINE void unpack4(const uint8_t* p, i32 (&out)[4]) noexcept {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i xh = _mm_srli_epi16(x, 4);  // byte j's low nibble: the high nibble of x's byte j
    const __m128i a = _mm_unpacklo_epi8(x, xh), b = _mm_unpackhi_epi8(x, xh);
    out[0] = _mm256_cvtepu8_epi32(a);
    out[1] = _mm256_cvtepu8_epi32(_mm_srli_si128(a, 8));
    out[2] = _mm256_cvtepu8_epi32(b);
    out[3] = _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8));
  }

  /// 16 floats as two 8-entry parts; index bit 3 picks the part.
  struct lut16 {
    f32 part[2];
  };
  static LOWBIT_ALWAYS_INLINE f32 lookup16(const lut16& t, const i32& idx) noexcept {
    const __m256 low = _mm256_permutevar8x32_ps(t.part[0], idx);
    const __m256 high = _mm256_permutevar8x32_ps(t.part[1], idx);
    return _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }

  template <std::size_t N>
  static LOWBIT_ALWAYS_INLINE void unpack8s(const uint8_t* p, i32 (&out)[N]) noexcept {
    for (std::size_t c = 0; c < N; ++c)
      out[c] = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * c)));
  }
  template <std::size_t N>
  static LOWBIT_ALWAYS_INLINE void unpack8u(const uint8_t* p, i32 (&out)[N]) noexcept {
    for (std::size_t c = 0; c < N; ++c)
      out[c] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * c)));
  }
  /// fp16 whose high byte is the code (E5M2 is the top half of binary16): 8 elements, 8 bytes.
  static LOWBIT_ALWAYS_INLINE f32 code_as_half_high_byte(const uint8_t* p) noexcept {
    const __m128i x = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtph_ps(_mm_slli_epi16(_mm_cvtepu8_epi16(x), 8));
  }

  /// 6-bit codes of 32 elements (24 bytes) top-aligned in four batches; reads 34 bytes.
  static constexpr std::size_t unpack6_read_bytes = 34;
  static LOWBIT_ALWAYS_INLINE void unpack6(const uint8_t* p, i32 (&out)[4]) noexcept {
    // Batch j: 8 codes in 6 bytes at 6j; 128-bit lane L holds codes 4L..4L+3 (bytes 3L..3L+2).
    const __m256i pattern = _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 1, 2, -1, -1, 2, 3,  //
                                             -1, -1, 3, 4, -1, -1, 3, 4, -1, -1, 4, 5, -1, -1, 5, 6);
    const __m256i shift = _mm256_setr_epi32(10, 4, 6, 8, 10, 4, 6, 8);
    for (int j = 0; j < 4; ++j) {
      const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 6 * j)));
      out[j] = _mm256_sllv_epi32(_mm256_shuffle_epi8(x, pattern), shift);
    }
  }

  static LOWBIT_ALWAYS_INLINE void stream(float* p, const f32& v) noexcept { _mm256_stream_ps(p, v); }
  static LOWBIT_ALWAYS_INLINE i32 load_u16(const uint16_t* p) noexcept {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static LOWBIT_ALWAYS_INLINE void store_u16(uint16_t* p, const i32& v, bool streaming) noexcept {
    const __m256i packed = _mm256_packus_epi32(v, v);  // 0..3 | 0..3 , 4..7 | 4..7 per 128-bit lane
    const __m128i ordered = _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
    if (streaming) {
      _mm_stream_si128(reinterpret_cast<__m128i*>(p), ordered);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), ordered);
    }
  }
};
#endif  // LOWBIT_COMPILED_AVX2

#if defined(LOWBIT_COMPILED_AVX512)
// ------------------------------------------------------------------------------------------------
// AVX-512 (F/BW/DQ/VL): 16 floats a batch. The VNNI/VBMI/BF16 level derives from it below.
template <class Tag>
struct ops_avx512 {
  using A = typename Tag::xsimd_arch;
  using f32 = xsimd::batch<float, A>;
  using i32 = xsimd::batch<int32_t, A>;
  using u32 = xsimd::batch<uint32_t, A>;
  static constexpr std::size_t lanes = 16;

  static LOWBIT_ALWAYS_INLINE f32 as_f32(const i32& x) noexcept { return _mm512_castsi512_ps(x); }
  static LOWBIT_ALWAYS_INLINE f32 as_f32(const u32& x) noexcept { return _mm512_castsi512_ps(x); }
  static LOWBIT_ALWAYS_INLINE i32 as_i32(const f32& x) noexcept { return _mm512_castps_si512(x); }
  static LOWBIT_ALWAYS_INLINE u32 as_u32(const f32& x) noexcept { return _mm512_castps_si512(x); }
  static LOWBIT_ALWAYS_INLINE f32 to_f32(const i32& x) noexcept { return _mm512_cvtepi32_ps(x); }
  /// c ? a : b lane by lane, by the intrinsic: xsimd 8.1's avx512bw select instantiates its 8- and
  /// 16-bit blends for 32-bit lanes too, which GCC rejects without optimization (its intrinsics
  /// are then macros that cast their arguments).
  static LOWBIT_ALWAYS_INLINE i32 select(const xsimd::batch_bool<int32_t, A>& c, const i32& a, const i32& b) noexcept {
    return _mm512_mask_blend_epi32(c, b, a);
  }

  /// 4-bit codes of 64 elements (32 bytes) in four batches: nibbles interleaved as bytes, widened.
  static LOWBIT_ALWAYS_INLINE void unpack4(const uint8_t* p, i32 (&out)[4]) noexcept {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i xh = _mm256_srli_epi16(x, 4);
    const __m256i a = _mm256_unpacklo_epi8(x, xh);  // elements 0..15 | 32..47
    const __m256i b = _mm256_unpackhi_epi8(x, xh);  // elements 16..31 | 48..63
    out[0] = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(a));
    out[1] = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(b));
    out[2] = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(a, 1));
    out[3] = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(b, 1));
  }

  /// The whole 16-entry table in one register: vpermps uses index bits 0..3.
  struct lut16 {
    f32 part[1];
  };
  static LOWBIT_ALWAYS_INLINE f32 lookup16(const lut16& t, const i32& idx) noexcept {
    return _mm512_permutexvar_ps(idx, t.part[0]);
  }

  template <std::size_t N>
  static LOWBIT_ALWAYS_INLINE void unpack8s(const uint8_t* p, i32 (&out)[N]) noexcept {
    for (std::size_t c = 0; c < N; ++c)
      out[c] = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * c)));
  }
  template <std::size_t N>
  static LOWBIT_ALWAYS_INLINE void unpack8u(const uint8_t* p, i32 (&out)[N]) noexcept {
    for (std::size_t c = 0; c < N; ++c)
      out[c] = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * c)));
  }
  static LOWBIT_ALWAYS_INLINE f32 code_as_half_high_byte(const uint8_t* p) noexcept {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm512_cvtph_ps(_mm256_slli_epi16(_mm256_cvtepu8_epi16(x), 8));
  }

  /// 6-bit codes of 64 elements (48 bytes) top-aligned in four batches; reads 52 bytes.
  static constexpr std::size_t unpack6_read_bytes = 52;
  static LOWBIT_ALWAYS_INLINE void unpack6(const uint8_t* p, i32 (&out)[4]) noexcept {
    // Batch j: 16 codes in 12 bytes at 12j, broadcast to the four 128-bit lanes; lane L holds codes
    // 4L..4L+3 from bytes 3L..3L+2 (same scheme as SSE, shifted by 3L).
    alignas(64) static constexpr int8_t shuffle[64] = {
        -1, -1, 0, 1, -1, -1, 0, 1, -1, -1, 1,  2,  -1, -1, 2,  3,    //
        -1, -1, 3, 4, -1, -1, 3, 4, -1, -1, 4,  5,  -1, -1, 5,  6,    //
        -1, -1, 6, 7, -1, -1, 6, 7, -1, -1, 7,  8,  -1, -1, 8,  9,    //
        -1, -1, 9, 10, -1, -1, 9, 10, -1, -1, 10, 11, -1, -1, 11, 12};
    const __m512i shuf = _mm512_load_si512(shuffle);
    const __m512i shift = _mm512_setr_epi32(10, 4, 6, 8, 10, 4, 6, 8, 10, 4, 6, 8, 10, 4, 6, 8);
    for (int j = 0; j < 4; ++j) {
      const __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 12 * j)));
      out[j] = _mm512_sllv_epi32(_mm512_shuffle_epi8(x, shuf), shift);
    }
  }

  static LOWBIT_ALWAYS_INLINE void stream(float* p, const f32& v) noexcept { _mm512_stream_ps(p, v); }
  static LOWBIT_ALWAYS_INLINE i32 load_u16(const uint16_t* p) noexcept {
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static LOWBIT_ALWAYS_INLINE void store_u16(uint16_t* p, const i32& v, bool streaming) noexcept {
    const __m256i packed = _mm512_cvtepi32_epi16(v);
    if (streaming) {
      _mm256_stream_si256(reinterpret_cast<__m256i*>(p), packed);
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), packed);
    }
  }
};

template <>
struct ops<arch::avx512_tag> : ops_avx512<arch::avx512_tag> {};
#endif  // LOWBIT_COMPILED_AVX512

#if defined(LOWBIT_COMPILED_AVX512_VNNI)
/// AVX-512 with VBMI: nibbles are placed by one vpmultishiftqb per batch.
template <>
struct ops<arch::avx512_vnni_tag> : ops_avx512<arch::avx512_vnni_tag> {
  static LOWBIT_ALWAYS_INLINE void unpack4(const uint8_t* p, i32 (&out)[4]) noexcept {
    // Each batch's 8 code bytes are broadcast to every qword; in qword q, dword 0's low byte takes
    // bits 8q..8q+7 (code 2q in its low nibble) and dword 1's takes bits 8q+4.. (code 2q+1).
    const __m512i control = _mm512_set_epi64(0x0000003C00000038, 0x0000003400000030, 0x0000002C00000028,
                                             0x0000002400000020, 0x0000001C00000018, 0x0000001400000010,
                                             0x0000000C00000008, 0x0000000400000000);
    for (int c = 0; c < 4; ++c)
      out[c] = _mm512_multishift_epi64_epi8(control,
                                            _mm512_set1_epi64(static_cast<long long>(detail::load_u64(p + 8 * c))));
  }
};
#endif  // LOWBIT_COMPILED_AVX512_VNNI

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
