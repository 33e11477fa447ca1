/// \file
/// \brief minifloat_traits: sign-exponent-mantissa formats (FP8, FP6, FP4) written once.
#pragma once

#include <cstdint>
#include <limits>

#include "value.hpp"

namespace lowbit {

/// What a minifloat does with its top codes.
enum class minifloat_specials {
  none,      ///< every code is finite (OCP FP6 and FP4)
  nan_only,  ///< only S.1111.111 is NaN, no infinities (OCP FP8 E4M3, the "fn" variant)
  ieee,      ///< exponent all ones: infinity (mantissa 0) or NaN (OCP FP8 E5M2)
};

/// format_traits for a 1-ExponentBits-MantissaBits float with the given bias. decode is exact;
/// encode rounds to nearest, ties to even, subnormals included, and then treats overflow as
/// `overflow` says. NaN stays NaN where the format has one (sign kept; quiet NaN code). Where it
/// has none (FP6, FP4): saturate mode gives +0, cast mode gives what ml_dtypes gives (a zero with
/// the NaN's sign bit inverted). Infinities count as overflow.
template <int ExponentBits, int MantissaBits, int Bias, minifloat_specials Specials>
struct minifloat_traits {
  static constexpr int bits = 1 + ExponentBits + MantissaBits;
  static constexpr bool is_signed = true;
  static constexpr format_kind kind = format_kind::floating;
  static constexpr bool has_codebook = false;
  static constexpr int exponent_bits = ExponentBits;
  static constexpr int mantissa_bits = MantissaBits;
  static constexpr int bias = Bias;
  static constexpr minifloat_specials specials = Specials;

  static constexpr uint8_t sign_bit = uint8_t(1u << (bits - 1));
  static constexpr uint8_t magnitude_mask = uint8_t(sign_bit - 1u);
  /// Magnitude code of the largest finite value.
  static constexpr uint8_t max_magnitude_code =
      Specials == minifloat_specials::none      ? magnitude_mask
      : Specials == minifloat_specials::nan_only ? uint8_t(magnitude_mask - 1u)
                                                 : uint8_t(((1u << ExponentBits) - 2u) << MantissaBits | ((1u << MantissaBits) - 1u));
  /// Exponent of the largest normal: the OCP MX emax_elem.
  static constexpr int emax = (max_magnitude_code >> MantissaBits) - Bias;
  static constexpr int emin = 1 - Bias;  ///< exponent of the smallest normal

  LOWBIT_HD static constexpr float decode(uint8_t code) noexcept {
    const uint8_t magnitude = code & magnitude_mask;
    const int e = magnitude >> MantissaBits, m = magnitude & ((1 << MantissaBits) - 1);
    float v = 0.0f;
    if (Specials == minifloat_specials::nan_only && magnitude == magnitude_mask) {
      v = std::numeric_limits<float>::quiet_NaN();
    } else if (Specials == minifloat_specials::ieee && e == (1 << ExponentBits) - 1) {
      v = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    } else if (e == 0) {
      v = static_cast<float>(m) * detail::pow2(emin - MantissaBits);
    } else {
      v = static_cast<float>((1 << MantissaBits) + m) * detail::pow2(e - Bias - MantissaBits);
    }
    return (code & sign_bit) ? -v : v;
  }

  static constexpr float max_finite =
      static_cast<float>((1 << MantissaBits) + (max_magnitude_code & ((1 << MantissaBits) - 1))) *
      detail::pow2(emax - MantissaBits);
  static constexpr float min_value = -max_finite;

  LOWBIT_HD static constexpr uint8_t encode(float x, overflow mode = overflow::saturate) noexcept {
    const uint32_t x_bits = bit_cast<uint32_t>(x);
    const uint8_t sign = (x_bits >> 31) ? sign_bit : uint8_t(0);
    if (x != x) {  // NaN
      if (Specials == minifloat_specials::nan_only) return uint8_t(sign | magnitude_mask);
      if (Specials == minifloat_specials::ieee)  // quiet NaN, S.11111.10 for E5M2, as ml_dtypes
        return uint8_t(sign | (((1u << ExponentBits) - 1u) << MantissaBits) | (1u << (MantissaBits - 1)));
      return mode == overflow::cast ? uint8_t(sign ^ sign_bit) : uint8_t(0);
    }
    const float a = x < 0 ? -x : x;
    // Round to a multiple of the quantum of a's binade (or of the subnormal quantum), exactly:
    // a / quantum < 2^(MantissaBits + 1) so the rounding happens in round_half_even.
    float rounded = 0.0f;
    if (a < detail::pow2(emax + 2)) {  // anything larger overflows whatever the rounding
      int e = static_cast<int>((bit_cast<uint32_t>(a) >> 23) & 0xFF) - 127;
      if (e < emin) e = emin;
      const float quantum = detail::pow2(e - MantissaBits);
      rounded = detail::round_half_even(a / quantum) * quantum;
    } else {
      rounded = std::numeric_limits<float>::infinity();
    }
    if (rounded > max_finite) {
      if (mode == overflow::cast && Specials == minifloat_specials::nan_only) return uint8_t(sign | magnitude_mask);
      if (mode == overflow::cast && Specials == minifloat_specials::ieee)
        return uint8_t(sign | (((1u << ExponentBits) - 1u) << MantissaBits));  // infinity
      return uint8_t(sign | max_magnitude_code);
    }
    // Code of the (exactly representable) rounded magnitude.
    if (rounded < detail::pow2(emin))
      return uint8_t(sign | static_cast<uint8_t>(rounded / detail::pow2(emin - MantissaBits)));
    const int e = static_cast<int>((bit_cast<uint32_t>(rounded) >> 23) & 0xFF) - 127;
    const uint32_t m = (bit_cast<uint32_t>(rounded) >> (23 - MantissaBits)) & ((1u << MantissaBits) - 1u);
    return uint8_t(sign | static_cast<uint8_t>(((e + Bias) << MantissaBits) | m));
  }
};

}  // namespace lowbit
