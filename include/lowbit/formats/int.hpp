/// \file
/// \brief Integer elements: int4 / uint4 / int8 / uint8 (two's complement or unsigned codes).
#pragma once

#include <cstdint>

#include "value.hpp"

namespace lowbit {

/// format_traits for a Bits-bit integer; Unit is an implicit power-of-two scale (1 for plain
/// integers, 2^-6 / 2^-2 for MX's fixed-point MXINT8 / MXINT4). encode rounds x / Unit half to
/// even and clamps to [Lowest, Highest]; NaN encodes to 0 (integers have no NaN).
template <int Bits, bool Signed, int Lowest, int Highest, int UnitExponent = 0>
struct integer_traits {
  static constexpr int bits = Bits;
  static constexpr bool is_signed = Signed;
  static constexpr format_kind kind = UnitExponent == 0 ? format_kind::integer : format_kind::fixed_point;
  static constexpr bool has_codebook = false;
  static constexpr float unit = detail::pow2(UnitExponent);
  static constexpr float max_finite = static_cast<float>(Highest) * unit;  ///< largest value
  static constexpr float min_value = static_cast<float>(Lowest) * unit;    ///< most negative value
  static constexpr int emax = 0;  ///< OCP MX emax_elem of the fixed-point MXINT formats

  LOWBIT_HD static constexpr int to_int(uint8_t code) noexcept {
    return (Signed && (code >> (Bits - 1))) ? static_cast<int>(code) - (1 << Bits) : static_cast<int>(code);
  }
  LOWBIT_HD static constexpr float decode(uint8_t code) noexcept { return static_cast<float>(to_int(code)) * unit; }
  LOWBIT_HD static constexpr uint8_t encode(float x, overflow = overflow::saturate) noexcept {
    if (x != x) return 0;
    float q = x / unit;  // exact: unit is a power of two
    q = q < static_cast<float>(Lowest) ? static_cast<float>(Lowest) : (q > static_cast<float>(Highest) ? static_cast<float>(Highest) : q);
    const int value = static_cast<int>(detail::round_half_even(q));
    return static_cast<uint8_t>(static_cast<unsigned>(value) & ((1u << Bits) - 1u));
  }
};

struct int4 : format_value<int4> {
  using format_value<int4>::format_value;
};
struct uint4 : format_value<uint4> {
  using format_value<uint4>::format_value;
};
struct int8 : format_value<int8> {
  using format_value<int8>::format_value;
};
struct uint8 : format_value<uint8> {
  using format_value<uint8>::format_value;
};

template <>
struct format_traits<int4> : integer_traits<4, true, -8, 7> {
  static constexpr const char* name = "int4";
};
template <>
struct format_traits<uint4> : integer_traits<4, false, 0, 15> {
  static constexpr const char* name = "uint4";
};
template <>
struct format_traits<int8> : integer_traits<8, true, -128, 127> {
  static constexpr const char* name = "int8";
};
template <>
struct format_traits<uint8> : integer_traits<8, false, 0, 255> {
  static constexpr const char* name = "uint8";
};
template <>
struct sizeof_bits<int4> {
  static constexpr int value = 4;
};
template <>
struct sizeof_bits<uint4> {
  static constexpr int value = 4;
};

}  // namespace lowbit

LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::int4)
LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::uint4)
LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::int8)
LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::uint8)
