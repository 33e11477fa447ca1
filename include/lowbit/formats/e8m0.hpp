/// \file
/// \brief E8M0: the OCP MX shared scale, 2^(code - 127); 0xFF is NaN; no zero, no sign.
#pragma once

#include <cstdint>
#include <limits>

#include "value.hpp"

namespace lowbit {

struct e8m0 : format_value<e8m0> {
  using format_value<e8m0>::format_value;
};

template <>
struct format_traits<e8m0> {
  static constexpr const char* name = "e8m0";
  static constexpr int bits = 8;
  static constexpr bool is_signed = false;
  static constexpr format_kind kind = format_kind::scale;
  static constexpr bool has_codebook = false;
  static constexpr int emax = 127;
  static constexpr float max_finite = detail::pow2(127);
  static constexpr float min_value = detail::pow2(-127);  ///< smallest value (there is no zero)

  LOWBIT_HD static constexpr float decode(uint8_t code) noexcept {
    return code == 0xFF ? std::numeric_limits<float>::quiet_NaN()
                        : (code == 0 ? bit_cast<float>(uint32_t(0x00400000)) : bit_cast<float>(uint32_t(code) << 23));
  }
  /// As ml_dtypes' float8_e8m0fnu cast: NaN, zero, negatives and infinities give NaN (0xFF); a
  /// normal float rounds half up on its mantissa (1.5 -> 2, 3 -> 4); a float subnormal gives
  /// 2^-127 up to 2^-127 and 2^-126 above it. Overflow (from 1.5 x 2^127) gives NaN in cast
  /// mode and 2^127 in saturate mode.
  LOWBIT_HD static constexpr uint8_t encode(float x, overflow mode = overflow::saturate) noexcept {
    if (!(x > 0.0f) || x == std::numeric_limits<float>::infinity()) return 0xFF;
    const uint32_t b = bit_cast<uint32_t>(x);
    const uint32_t exponent = b >> 23, mantissa = b & 0x7FFFFFu;
    if (exponent == 0) return mantissa > 0x400000u ? 1 : 0;
    const uint32_t code = exponent + (mantissa >= 0x400000u ? 1u : 0u);
    if (code >= 0xFF) return mode == overflow::cast ? uint8_t(0xFF) : uint8_t(0xFE);
    return static_cast<uint8_t>(code);
  }
};

static_assert(format_traits<e8m0>::decode(127) == 1.0f && format_traits<e8m0>::encode(3.0f) == 129, "E8M0");

}  // namespace lowbit
