/// \file
/// \brief Decoding the panel layout (layout/panel.hpp) on every SIMD arch: a 64-byte chunk holds
/// one 32-bit lane per row, and element j of a lane comes out as a float batch with one row per
/// lane, (decode(code) - decode(zero)) * scale exactly as the reference computes it.
///
/// Element j of a lane: 4-bit formats, nibble j % 4 * 8 + j / 4 * 4 of the lane, looked up in a
/// register table (the lookups only read an index's low four bits, so no mask is needed); 8-bit
/// formats, byte j, widened; 6-bit minifloats, byte j holding the code. The minifloat formula is
/// decode.hpp's, fed with the code shifted to where it expects it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../layout/panel.hpp"
#include "decode.hpp"
#include "dequantize.hpp"
#include "ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

#if defined(LOWBIT_COMPILED_SSE42)

template <class Tag, class Format>
struct panel_decoder {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  static constexpr std::size_t lanes = O::lanes;
  static constexpr std::size_t vectors_per_panel = 16 / lanes;  ///< batches that hold a panel's 16 rows
  static constexpr int bits = format_traits<Format>::bits;
  static constexpr std::size_t per_lane = bits == 4 ? 8 : 4;  ///< elements of a row in one lane
  static constexpr decode_plan_data plan = decode_plan<Format>::value;
  static constexpr bool lut = bits == 4;
  static constexpr bool register_lut = lut && Tag::level >= isa::avx2;

  struct no_table {};
  std::conditional_t<register_lut, typename O::lut16, no_table> table;
  const float* values = detail::decode_table<Format>();

  panel_decoder() noexcept {
    if constexpr (register_lut) {
      for (std::size_t i = 0; i < 16 / lanes; ++i) table.part[i] = f32::load_unaligned(values + i * lanes);
    }
  }

  /// The unscaled value of element J of each lane of `w`.
  template <std::size_t J>
  LOWBIT_ALWAYS_INLINE f32 decode(const i32& w) const noexcept {
    if constexpr (lut) {
      constexpr int shift = static_cast<int>(J % 4 * 8 + J / 4 * 4);
      const i32 idx = shift ? i32(w >> shift) : w;
      if constexpr (register_lut) {
        return O::lookup16(table, idx);
      } else {
        alignas(64) int32_t code[lanes];
        alignas(64) float out[lanes];
        idx.store_aligned(code);
        for (std::size_t i = 0; i < lanes; ++i) out[i] = values[code[i] & 15];
        return f32::load_aligned(out);
      }
    } else if constexpr (plan.method == decode_method::int_widen) {
      const i32 top = w << static_cast<int>(24 - 8 * J);  // byte J in bits 24..31
      const i32 v = plan.is_signed ? i32(top >> 24) : i32((top >> 24) & i32(0xFF));
      if constexpr (plan.unit == 1.0f) {
        return O::to_f32(v);
      } else {
        return O::to_f32(v) * f32(plan.unit);
      }
    } else if constexpr (plan.method == decode_method::minifloat && bits == 8) {
      const i32 top = w << static_cast<int>(24 - 8 * J);
      return minifloat_from_aligned<Tag, Format>(top >> (1 + plan.mantissa_bits));
    } else if constexpr (plan.method == decode_method::minifloat && bits == 6) {
      const i32 top = w << static_cast<int>(26 - 8 * J);  // the code's 6 bits in 26..31
      return minifloat_from_aligned<Tag, Format>(top >> (3 + plan.mantissa_bits));
    } else {
      alignas(64) int32_t code[lanes];
      alignas(64) float out[lanes];
      w.store_aligned(code);
      for (std::size_t i = 0; i < lanes; ++i) out[i] = values[(static_cast<uint32_t>(code[i]) >> (8 * J)) & 0xFF];
      return f32::load_aligned(out);
    }
  }
};

/// The 16 scales of a panel's group as float batches. fp16 and E8M0 are converted in registers
/// (a scalar conversion stored and reloaded would stall on store forwarding once per group).
template <class Tag, class Scale>
LOWBIT_ALWAYS_INLINE void load_panel_scales(const Scale* s, typename ops<Tag>::f32* out) noexcept {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  constexpr std::size_t V = 16 / O::lanes;
  if constexpr (std::is_same<Scale, float>::value) {
    for (std::size_t v = 0; v < V; ++v) out[v] = f32::load_unaligned(s + v * O::lanes);
  } else if constexpr (std::is_same<Scale, fp16>::value && O::lanes == 16) {
    out[0] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
  } else if constexpr (std::is_same<Scale, fp16>::value && O::lanes == 8) {
    for (std::size_t v = 0; v < V; ++v) out[v] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 8 * v)));
  } else if constexpr (std::is_same<Scale, e8m0>::value) {
    // 2^(e - 127): e in the float exponent field; e = 0 is the subnormal 2^-127, e = 255 is NaN.
    i32 e[V];
    O::unpack8u(reinterpret_cast<const uint8_t*>(s), e);
    for (std::size_t v = 0; v < V; ++v) {
      const i32 bits = O::select(e[v] == i32(0), i32(0x00400000), O::select(e[v] == i32(255), i32(0x7FC00000), i32(e[v] << 23)));
      out[v] = O::as_f32(bits);
    }
  } else {
    alignas(64) float f[16];
    for (int i = 0; i < 16; ++i) f[i] = detail::scale_value<Tag>(s[i]);
    for (std::size_t v = 0; v < V; ++v) out[v] = f32::load_aligned(f + v * O::lanes);
  }
}

/// decode(zero) of a panel's 16 zero points as float batches, through the panel decoder (a zero
/// point is a code of the format; as element 0 of a lane it decodes like one).
template <class Tag, class Format>
LOWBIT_ALWAYS_INLINE void load_panel_zeros(const panel_decoder<Tag, Format>& dec, const uint8_t* z,
                                           typename ops<Tag>::f32* out) noexcept {
  using O = ops<Tag>;
  constexpr std::size_t V = 16 / O::lanes;
  typename O::i32 codes[V];
  O::unpack8u(z, codes);
  for (std::size_t v = 0; v < V; ++v) out[v] = dec.template decode<0>(codes[v]);
}

/// The scales and decoded zero points of the group a chunk is in, reloaded only when the group
/// changes (the tile decoders visit a panel's chunks in order).
template <class Tag, class Scheme>
struct panel_group_cursor {
  using D = panel_decoder<Tag, typename Scheme::format>;
  typename ops<Tag>::f32 scale[D::vectors_per_panel], zero[D::vectors_per_panel];
  std::size_t group = ~std::size_t(0);

  LOWBIT_ALWAYS_INLINE void seek(const panel_matrix<Scheme>& w, const D& dec, std::size_t panel,
                                 std::size_t chunk) noexcept {
    const std::size_t g = chunk * D::per_lane / w.shape().group_size;
    if (g == group) return;
    group = g;
    load_panel_scales<Tag>(w.scales(panel, g), scale);
    if constexpr (Scheme::has_zero) load_panel_zeros(dec, w.zeros(panel, g), zero);
  }
};

/// The chunks of group g: [begin, end). Group sizes are multiples of per_lane or the whole row.
struct chunk_range_of_group {
  std::size_t begin, end;
};
inline chunk_range_of_group group_chunks(std::size_t g, std::size_t groups, std::size_t group_size,
                                         std::size_t per_lane, std::size_t chunks) noexcept {
  return {g * group_size / per_lane, g + 1 == groups ? chunks : (g + 1) * group_size / per_lane};
}

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
