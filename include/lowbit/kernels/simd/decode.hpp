/// \file
/// \brief SIMD decoders: packed codes of an element format to float batches, bit-identical to
/// format_traits<Format>::decode, for every arch tag.
///
/// How a format is decoded is chosen at compile time from its scalar decode (decode_plan), which
/// is checked against the candidate bit-level formula for every code, so a fast path can never
/// disagree with the reference:
///  - 4-bit formats (int4, uint4, fp4_e2m1, nf4, sf4, iq4_nl, mxint4, ...): a 16-entry float table
///    built from decode, looked up in registers (vpermps on AVX-512, two vpermps + blend on AVX2,
///    four pshufb byte tables on SSE4.2). Per group the table is pre-multiplied by the scale (and
///    shifted by the zero point), so a batch costs one lookup: (t[c] - z) * s is exactly the
///    reference's (decode(c) - decode(zero)) * scale.
///  - 8-bit integers (int8, uint8, mxint8): widening convert, times the format's power-of-two unit.
///  - 8- and 6-bit minifloats (FP8 E4M3/E5M2, FP6 E3M2/E2M3): the magnitude bits are shifted into
///    the fp32 exponent/mantissa fields and multiplied by 2^(127 - bias) (exact, subnormals
///    included, assuming the default MXCSR without DAZ); NaN / inf codes are patched. E5M2 on
///    AVX2 and up: the code is the high byte of an fp16, converted by vcvtph2ps.
///  - anything else: a scalar table lookup into a small buffer (correct for any format, slow).
///
/// A decoder processes `block` elements (`batches` batches of `lanes` floats) at a time from
/// `block_bytes` packed bytes, reading at most `read_bytes` bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "../../core/bits.hpp"
#include "../../core/config.hpp"
#include "../../formats/format.hpp"
#include "ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

/// How the SIMD paths decode a format.
enum class decode_method { lut16, int_widen, minifloat, table };

/// What a minifloat does with its top codes.
enum class nan_rule {
  none,           ///< every code finite (FP6, FP4)
  max_magnitude,  ///< only S.111..1 is NaN, no inf (E4M3 "fn")
  ieee,           ///< exponent all ones: inf (mantissa 0) or NaN (E5M2)
};

struct decode_plan_data {
  decode_method method = decode_method::table;
  bool is_signed = false;  ///< int_widen: sign-extend the code
  float unit = 1.0f;       ///< int_widen: decode(c) == int(c) * unit (a power of two)
  int exponent_bits = 0, mantissa_bits = 0, bias = 0;  ///< minifloat: 1 sign bit on top
  nan_rule nan = nan_rule::none;
};

namespace detail {

constexpr float pow2(int e) noexcept {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}

constexpr bool same_float(float a, float b) noexcept {
  if (a != a) return b != b;  // NaN: any NaN
  if (b != b) return false;
  return lowbit::bit_cast<uint32_t>(a) == lowbit::bit_cast<uint32_t>(b);  // tells -0 from +0
}

template <class Format>
constexpr bool matches_int(bool is_signed, float unit) noexcept {
  for (int c = 0; c < 256; ++c) {
    const int value = is_signed && c >= 128 ? c - 256 : c;
    if (!same_float(format_traits<Format>::decode(static_cast<uint8_t>(c)), static_cast<float>(value) * unit))
      return false;
  }
  return true;
}

/// The value a sign-magnitude minifloat with these parameters gives code c (NaN as quiet NaN).
constexpr float minifloat_value(int c, int bits, int e_bits, int m_bits, int bias, nan_rule rule) noexcept {
  const int magnitude = c & ((1 << (bits - 1)) - 1);
  const bool negative = (c >> (bits - 1)) & 1;
  const int e = magnitude >> m_bits, m = magnitude & ((1 << m_bits) - 1);
  float v = 0.0f;
  if (rule == nan_rule::max_magnitude && magnitude == (1 << (bits - 1)) - 1)
    return std::numeric_limits<float>::quiet_NaN();
  if (rule == nan_rule::ieee && e == (1 << e_bits) - 1) {
    if (m != 0) return std::numeric_limits<float>::quiet_NaN();
    v = std::numeric_limits<float>::infinity();
  } else if (e == 0) {
    v = static_cast<float>(m) * pow2(1 - bias - m_bits);
  } else {
    v = static_cast<float>((1 << m_bits) + m) * pow2(e - bias - m_bits);
  }
  return negative ? -v : v;
}

template <class Format>
constexpr bool matches_minifloat(int e_bits, int m_bits, int bias, nan_rule rule) noexcept {
  constexpr int bits = format_traits<Format>::bits;
  for (int c = 0; c < (1 << bits); ++c)
    if (!same_float(format_traits<Format>::decode(static_cast<uint8_t>(c)),
                    minifloat_value(c, bits, e_bits, m_bits, bias, rule)))
      return false;
  return true;
}

template <class Format>
constexpr decode_plan_data make_plan() noexcept {
  using traits = format_traits<Format>;
  constexpr int bits = traits::bits;
  decode_plan_data plan;
  if (bits == 4) {
    plan.method = decode_method::lut16;
    return plan;
  }
  if (bits == 8) {
    for (int is_signed = 1; is_signed >= 0; --is_signed) {
      const float unit = traits::decode(1);
      bool power_of_two = false;
      for (int e = -40; e <= 40; ++e) power_of_two = power_of_two || unit == pow2(e);
      if (power_of_two && matches_int<Format>(is_signed != 0, unit)) {
        plan.method = decode_method::int_widen;
        plan.is_signed = is_signed != 0;
        plan.unit = unit;
        return plan;
      }
    }
  }
  if (bits == 8 || bits == 6) {
    for (int e_bits = 1; e_bits <= bits - 1; ++e_bits) {
      const int m_bits = bits - 1 - e_bits;
      // The smallest normal (exponent field 1, mantissa 0) is 2^(1 - bias).
      const float smallest_normal = traits::decode(static_cast<uint8_t>(1 << m_bits));
      for (int bias = 0; bias <= 126; ++bias) {
        if (smallest_normal != pow2(1 - bias)) continue;
        for (nan_rule rule : {nan_rule::none, nan_rule::max_magnitude, nan_rule::ieee}) {
          if (matches_minifloat<Format>(e_bits, m_bits, bias, rule)) {
            plan.method = decode_method::minifloat;
            plan.exponent_bits = e_bits;
            plan.mantissa_bits = m_bits;
            plan.bias = bias;
            plan.nan = rule;
            return plan;
          }
        }
      }
    }
  }
  plan.method = decode_method::table;
  return plan;
}

/// decode(c) for every code, computed once.
template <class Format>
const float* decode_table() noexcept {
  constexpr int codes = 1 << format_traits<Format>::bits;
  static const std::array<float, codes> table = [] {
    std::array<float, codes> t{};
    for (int c = 0; c < codes; ++c) t[c] = format_traits<Format>::decode(static_cast<uint8_t>(c));
    return t;
  }();
  return table.data();
}

/// Calls f(std::integral_constant<std::size_t, I>{}) for I = 0 .. N-1, unrolled.
template <class F, std::size_t... I>
LOWBIT_ALWAYS_INLINE void static_for_impl(F&& f, std::index_sequence<I...>) {
  (f(std::integral_constant<std::size_t, I>{}), ...);
}
template <std::size_t N, class F>
LOWBIT_ALWAYS_INLINE void static_for(F&& f) {
  static_for_impl(f, std::make_index_sequence<N>{});
}

}  // namespace detail

/// The compile-time decision for Format (see the file comment).
template <class Format>
struct decode_plan {
  static constexpr decode_plan_data value = detail::make_plan<Format>();
  static constexpr decode_method method = value.method;
};

#if defined(LOWBIT_COMPILED_SSE42)

/// Decoders whose per-group step is arithmetic: value = (decode - zero) * scale in batches.
template <class Tag>
struct arithmetic_group {
  using f32 = typename ops<Tag>::f32;
  f32 scale, zero;
};

template <class Tag, class Derived>
struct arithmetic_decoder {
  using f32 = typename ops<Tag>::f32;
  using group = arithmetic_group<Tag>;
  template <bool HasZero>
  LOWBIT_ALWAYS_INLINE group prepare(float scale, float zero) const noexcept {
    return {f32(scale), f32(zero)};
  }
  template <std::size_t J, bool HasZero, class Unpacked>
  LOWBIT_ALWAYS_INLINE f32 apply(const group& g, const Unpacked& u) const noexcept {
    const f32 v = static_cast<const Derived*>(this)->template decode<J>(u);
    if constexpr (HasZero) {
      return (v - g.zero) * g.scale;
    } else {
      return v * g.scale;
    }
  }
};

/// 4-bit codes through a register table (AVX2, AVX-512): the group step pre-scales the table.
template <class Tag, class Format>
struct lut16_decoder {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  static constexpr std::size_t lanes = O::lanes, batches = 4, block = batches * lanes;
  static constexpr std::size_t block_bytes = block / 2, read_bytes = block_bytes;
  static constexpr std::size_t parts = 16 / lanes;
  struct unpacked {
    i32 idx[batches];
  };
  using group = typename O::lut16;

  group base;
  lut16_decoder() noexcept {
    const float* t = detail::decode_table<Format>();
    for (std::size_t i = 0; i < parts; ++i) base.part[i] = f32::load_unaligned(t + i * lanes);
  }
  LOWBIT_ALWAYS_INLINE void unpack(const uint8_t* p, unpacked& u) const noexcept { O::unpack4(p, u.idx); }
  template <std::size_t J>
  LOWBIT_ALWAYS_INLINE f32 decode(const unpacked& u) const noexcept {
    return O::lookup16(base, u.idx[J]);
  }
  template <bool HasZero>
  LOWBIT_ALWAYS_INLINE group prepare(float scale, float zero) const noexcept {
    group g;
    const f32 s(scale), z(zero);
    for (std::size_t i = 0; i < parts; ++i) {
      if constexpr (HasZero) {
        g.part[i] = (base.part[i] - z) * s;
      } else {
        g.part[i] = base.part[i] * s;
      }
    }
    return g;
  }
  template <std::size_t J, bool HasZero>
  LOWBIT_ALWAYS_INLINE f32 apply(const group& g, const unpacked& u) const noexcept {
    return O::lookup16(g, u.idx[J]);
  }
};

/// 4-bit codes on SSE4.2: pshufb byte tables give the decoded values; scaling is arithmetic.
template <class Format>
struct lut16_decoder_sse : arithmetic_decoder<arch::sse42_tag, lut16_decoder_sse<Format>> {
  using O = ops<arch::sse42_tag>;
  using f32 = typename O::f32;
  static constexpr std::size_t lanes = O::lanes, batches = 8, block = batches * lanes;
  static constexpr std::size_t block_bytes = block / 2, read_bytes = block_bytes;
  struct unpacked {
    f32 v[batches];
  };
  typename O::lut16 table;
  lut16_decoder_sse() noexcept : table(O::make_lut16(detail::decode_table<Format>())) {}
  LOWBIT_ALWAYS_INLINE void unpack(const uint8_t* p, unpacked& u) const noexcept {
    O::lookup16x16(table, O::nibble_indices(p), u.v);
    O::lookup16x16(table, O::nibble_indices(p + 8), u.v + 4);
  }
  template <std::size_t J>
  LOWBIT_ALWAYS_INLINE f32 decode(const unpacked& u) const noexcept {
    return u.v[J];
  }
};

/// 8-bit integer codes: widen, convert, times the format's unit (exact: a power of two).
template <class Tag, class Format>
struct int8_decoder : arithmetic_decoder<Tag, int8_decoder<Tag, Format>> {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  static constexpr decode_plan_data plan = decode_plan<Format>::value;
  static constexpr std::size_t lanes = O::lanes, batches = 4, block = batches * lanes;
  static constexpr std::size_t block_bytes = block, read_bytes = block_bytes;
  struct unpacked {
    i32 code[batches];
  };
  LOWBIT_ALWAYS_INLINE void unpack(const uint8_t* p, unpacked& u) const noexcept {
    if constexpr (plan.is_signed) {
      O::unpack8s(p, u.code);
    } else {
      O::unpack8u(p, u.code);
    }
  }
  template <std::size_t J>
  LOWBIT_ALWAYS_INLINE f32 decode(const unpacked& u) const noexcept {
    if constexpr (plan.unit == 1.0f) {
      return O::to_f32(u.code[J]);
    } else {
      return O::to_f32(u.code[J]) * f32(plan.unit);
    }
  }
};

/// The minifloat formula on lanes `t` that hold the magnitude with its lowest bit at bit 23 - M
/// and copies of the sign bit above it.
template <class Tag, class Format>
LOWBIT_ALWAYS_INLINE typename ops<Tag>::f32 minifloat_from_aligned(const typename ops<Tag>::i32& t) noexcept {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  constexpr decode_plan_data plan = decode_plan<Format>::value;
  constexpr int E = plan.exponent_bits, M = plan.mantissa_bits;
  constexpr uint32_t magnitude_mask = ((1u << (E + M)) - 1u) << (23 - M);
  constexpr uint32_t exponent_mask = ((1u << E) - 1u) << 23;
  const i32 bits = t & i32(static_cast<int32_t>(0x80000000u | magnitude_mask));
  const f32 value = O::as_f32(bits) * f32(detail::pow2(127 - plan.bias));
  if constexpr (plan.nan == nan_rule::max_magnitude) {
    const i32 m(static_cast<int32_t>(magnitude_mask));
    return O::as_f32(O::select((t & m) == m, i32(0x7FC00000), O::as_i32(value)));
  } else if constexpr (plan.nan == nan_rule::ieee) {
    const i32 m(static_cast<int32_t>(exponent_mask));
    return O::as_f32(O::select((t & m) == m, bits | i32(0x7F800000), O::as_i32(value)));
  } else {
    return value;
  }
}

/// True when the arch converts fp16 in hardware (F16C): E5M2 is then one vcvtph2ps.
template <class Tag>
constexpr bool has_f16c = Tag::level >= isa::avx2;

/// 8-bit minifloats.
template <class Tag, class Format>
struct minifloat8_decoder : arithmetic_decoder<Tag, minifloat8_decoder<Tag, Format>> {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  static constexpr decode_plan_data plan = decode_plan<Format>::value;
  static constexpr bool via_half = has_f16c<Tag> && plan.exponent_bits == 5 && plan.mantissa_bits == 2 &&
                                   plan.bias == 15 && plan.nan == nan_rule::ieee;
  static constexpr std::size_t lanes = O::lanes, batches = 4, block = batches * lanes;
  static constexpr std::size_t block_bytes = block, read_bytes = block_bytes;
  struct unpacked {
    std::conditional_t<via_half, f32, i32> v[batches];
  };
  LOWBIT_ALWAYS_INLINE void unpack(const uint8_t* p, unpacked& u) const noexcept {
    if constexpr (via_half) {
      for (std::size_t c = 0; c < batches; ++c) u.v[c] = O::code_as_half_high_byte(p + c * lanes);
    } else {
      O::unpack8s(p, u.v);
    }
  }
  template <std::size_t J>
  LOWBIT_ALWAYS_INLINE f32 decode(const unpacked& u) const noexcept {
    if constexpr (via_half) {
      return u.v[J];
    } else {
      return minifloat_from_aligned<Tag, Format>(u.v[J] << (23 - plan.mantissa_bits));
    }
  }
};

/// 6-bit minifloats: codes unpacked top-aligned, then an arithmetic shift sign-extends them.
template <class Tag, class Format>
struct minifloat6_decoder : arithmetic_decoder<Tag, minifloat6_decoder<Tag, Format>> {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  static constexpr decode_plan_data plan = decode_plan<Format>::value;
  static constexpr std::size_t lanes = O::lanes, batches = 4, block = batches * lanes;
  static constexpr std::size_t block_bytes = block * 6 / 8, read_bytes = O::unpack6_read_bytes;
  struct unpacked {
    i32 top[batches];
  };
  LOWBIT_ALWAYS_INLINE void unpack(const uint8_t* p, unpacked& u) const noexcept { O::unpack6(p, u.top); }
  template <std::size_t J>
  LOWBIT_ALWAYS_INLINE f32 decode(const unpacked& u) const noexcept {
    // Code bits 26..31 -> magnitude's lowest bit at 23 - M, sign copies above.
    return minifloat_from_aligned<Tag, Format>(u.top[J] >> (3 + plan.mantissa_bits));
  }
};

/// Any format: codes through the scalar decode table into a buffer.
template <class Tag, class Format>
struct table_decoder : arithmetic_decoder<Tag, table_decoder<Tag, Format>> {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  static constexpr int bits = format_traits<Format>::bits;
  static constexpr std::size_t lanes = O::lanes, batches = 4, block = batches * lanes;
  static constexpr std::size_t block_bytes = block * bits / 8, read_bytes = block_bytes;
  static_assert(block * bits % 8 == 0, "a block must end on a byte boundary");
  struct unpacked {
    alignas(64) float v[block];
  };
  const float* table = detail::decode_table<Format>();
  LOWBIT_ALWAYS_INLINE void unpack(const uint8_t* p, unpacked& u) const noexcept {
    for (std::size_t i = 0; i < block; ++i) u.v[i] = table[get_packed_code(p, i, bits)];
  }
  template <std::size_t J>
  LOWBIT_ALWAYS_INLINE f32 decode(const unpacked& u) const noexcept {
    return f32::load_aligned(u.v + J * lanes);
  }
};

namespace detail {
template <class Tag, class Format>
struct select_decoder {
  static constexpr decode_plan_data plan = decode_plan<Format>::value;
  static constexpr int bits = format_traits<Format>::bits;
  using lut = std::conditional_t<std::is_same<Tag, arch::sse42_tag>::value, lut16_decoder_sse<Format>,
                                 lut16_decoder<Tag, Format>>;
  using type = std::conditional_t<
      plan.method == decode_method::lut16, lut,
      std::conditional_t<
          plan.method == decode_method::int_widen, int8_decoder<Tag, Format>,
          std::conditional_t<plan.method == decode_method::minifloat && bits == 8, minifloat8_decoder<Tag, Format>,
                             std::conditional_t<plan.method == decode_method::minifloat && bits == 6,
                                                minifloat6_decoder<Tag, Format>, table_decoder<Tag, Format>>>>>;
};
}  // namespace detail

/// The decoder of Format for arch Tag (SIMD tags only).
template <class Tag, class Format>
using decoder = typename detail::select_decoder<Tag, Format>::type;

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
