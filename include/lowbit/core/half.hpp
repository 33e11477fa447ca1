/// \file
/// \brief Host-side fp16 (IEEE binary16) and bf16 value types with round-to-nearest-even conversion.
#pragma once

#include <cstdint>

#include "config.hpp"

namespace lowbit {

namespace detail {

LOWBIT_HD constexpr uint16_t float_to_half_bits(float value) noexcept {
  const uint32_t x = bit_cast<uint32_t>(value);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu));  // NaN stays NaN
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504: inf
  if (abs >= 0x38800000u) {  // normal half
    const uint32_t rounded = abs + 0xFFFu + ((abs >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  // Subnormal half (or zero): shift the full significand right, rounding to nearest even.
  const uint32_t exponent = abs >> 23;
  if (exponent < 102) return static_cast<uint16_t>(sign);  // below half of the smallest subnormal
  const uint32_t significand = (abs & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - exponent;  // 14 + (113 - exponent) - 1 ... brings 2^-24 to 1
  const uint32_t truncated = significand >> shift;
  const uint32_t remainder = significand & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1u);
  const uint32_t round_up = (remainder > halfway || (remainder == halfway && (truncated & 1u))) ? 1u : 0u;
  return static_cast<uint16_t>(sign | (truncated + round_up));
}

LOWBIT_HD constexpr float half_bits_to_float(uint16_t h) noexcept {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1Fu) return bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  if (exponent != 0) return bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Subnormal or zero: mantissa * 2^-24 is exact in float.
  const float magnitude = static_cast<float>(mantissa) * (1.0f / 16777216.0f);
  return sign ? -magnitude : magnitude;
}

LOWBIT_HD constexpr uint16_t float_to_bf16_bits(float value) noexcept {
  const uint32_t x = bit_cast<uint32_t>(value);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

LOWBIT_HD constexpr float bf16_bits_to_float(uint16_t b) noexcept {
  return bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

}  // namespace detail

/// IEEE 754 binary16. Storage only: arithmetic happens in float.
struct fp16 {
  uint16_t bits = 0;
  constexpr fp16() = default;
  LOWBIT_HD constexpr explicit fp16(float value) noexcept : bits(detail::float_to_half_bits(value)) {}
  LOWBIT_HD static constexpr fp16 from_bits(uint16_t b) noexcept { fp16 h; h.bits = b; return h; }
  LOWBIT_HD constexpr explicit operator float() const noexcept { return detail::half_bits_to_float(bits); }
  LOWBIT_HD constexpr float to_float() const noexcept { return detail::half_bits_to_float(bits); }
};

/// bfloat16: the top 16 bits of an IEEE binary32.
struct bf16 {
  uint16_t bits = 0;
  constexpr bf16() = default;
  LOWBIT_HD constexpr explicit bf16(float value) noexcept : bits(detail::float_to_bf16_bits(value)) {}
  LOWBIT_HD static constexpr bf16 from_bits(uint16_t b) noexcept { bf16 h; h.bits = b; return h; }
  LOWBIT_HD constexpr explicit operator float() const noexcept { return detail::bf16_bits_to_float(bits); }
  LOWBIT_HD constexpr float to_float() const noexcept { return detail::bf16_bits_to_float(bits); }
};

static_assert(sizeof(fp16) == 2 && sizeof(bf16) == 2, "fp16/bf16 must be two bytes");

}  // namespace lowbit
