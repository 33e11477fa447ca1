/// \file
/// \brief Which element formats the integer (W8A8 / W4A8) GEMM path takes: those whose every code
/// decodes to an integer times a power-of-two unit, as the unsigned bytes VNNI's vpdpbusd reads.
///
/// For such a format decode(c) = (u8(c) - offset) * unit with u8(c) in [0, 255], so
///   (decode(c) - decode(z)) * scale = (u8(c) - u8(z)) * (unit * scale)
/// and a group's dot product with int8 activations q is  sum u8(c) q  -  u8(z) sum q  (or offset
/// in place of u8(z) without zero points): one vpdpbusd per 4 products plus one correction per group.
/// int4, uint4, int8, uint8, mxint4, mxint8, IQ4_NL (its codebook is integers) and fp4_e2m1
/// (halves: unit 0.5) qualify; NF4, SF4 and the FP8/FP6 formats do not.
#pragma once

#include <array>
#include <cstdint>

#include "../formats/format.hpp"

namespace lowbit {

namespace detail {
struct integer_code_map {
  bool ok = false;
  float unit = 0.0f;
  int offset = 0;                ///< u8(c) = decode(c) / unit + offset
  int max_u8 = 0;                ///< the largest u8(c)
  std::array<uint8_t, 256> u8{};  ///< per code
  uint8_t flip = 0;              ///< 8-bit formats: u8(c) == c ^ flip for every code (0 or 0x80)
  bool identity = false;         ///< u8(c) == c for every code
  std::array<uint8_t, 64> shuffle{};  ///< 4-bit formats: u8 of code i & 15 at byte i (a vpshufb table per 128 bits)
};

constexpr bool is_integer(float v) noexcept { return v == static_cast<float>(static_cast<long long>(v)); }

template <class Format>
constexpr integer_code_map make_integer_code_map() noexcept {
  constexpr int codes = 1 << format_traits<Format>::bits;
  integer_code_map m;
  if (format_traits<Format>::bits > 8) return m;
  float unit = 0.0f;  // the smallest non-zero magnitude; every value must be a multiple of it
  for (int c = 0; c < codes; ++c) {
    const float v = format_traits<Format>::decode(static_cast<uint8_t>(c));
    if (!(v == v) || v > 3.0e38f || v < -3.0e38f) return m;  // NaN or inf
    const float a = v < 0 ? -v : v;
    if (a != 0.0f && (unit == 0.0f || a < unit)) unit = a;
  }
  if (unit == 0.0f) return m;
  int low = 1 << 30, high = -(1 << 30);
  for (int c = 0; c < codes; ++c) {
    const float q = format_traits<Format>::decode(static_cast<uint8_t>(c)) / unit;
    if (!is_integer(q) || q > 255.0f || q < -255.0f) return m;
    low = static_cast<int>(q) < low ? static_cast<int>(q) : low;
    high = static_cast<int>(q) > high ? static_cast<int>(q) : high;
  }
  if (high - low > 255) return m;
  m.unit = unit;
  m.offset = -low;
  m.max_u8 = high - low;
  bool identity = true, flipped = true;
  for (int c = 0; c < codes; ++c) {
    m.u8[c] = static_cast<uint8_t>(static_cast<int>(format_traits<Format>::decode(static_cast<uint8_t>(c)) / unit) - low);
    identity = identity && m.u8[c] == c;
    flipped = flipped && m.u8[c] == (c ^ 0x80);
  }
  // Kernels translate 4-bit codes with a 16-byte shuffle and 8-bit ones with a xor; other widths
  // (FP6 E2M3 would be integer halves-of-quarters) are left to the float path.
  m.identity = identity;
  for (int i = 0; i < 64; ++i) m.shuffle[i] = m.u8[i & 15];
  if (codes == 256) {
    m.ok = identity || flipped;
    m.flip = flipped ? 0x80 : 0;
  } else {
    m.ok = codes == 16;
  }
  return m;
}
}  // namespace detail

/// integer_codes<Format>::value: ok, unit, offset and the u8 of every code (see the file comment).
template <class Format>
struct integer_codes {
  static constexpr detail::integer_code_map value = detail::make_integer_code_map<Format>();
  static constexpr bool ok = value.ok;
};

/// True when the integer GEMM path (int8 activations) accepts weights of Format.
template <class Format>
constexpr bool has_integer_path = integer_codes<Format>::ok;

}  // namespace lowbit
