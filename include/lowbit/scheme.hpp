/// \file
/// \brief How a matrix is quantized: element format x scale type x zero point (group size is a run-time value).
#pragma once

#include <cmath>
#include <type_traits>

#include "core/half.hpp"
#include "formats/all.hpp"

namespace lowbit {

/// How a scale of type Scale is stored and read back. float, fp16, bf16 and e8m0 are provided.
template <class Scale>
struct scale_traits;

template <>
struct scale_traits<float> {
  static constexpr const char* name = "f32";
  LOWBIT_HD static constexpr float to_float(float s) noexcept { return s; }
  LOWBIT_HD static constexpr float from_float(float s) noexcept { return s; }
};
template <>
struct scale_traits<fp16> {
  static constexpr const char* name = "f16";
  LOWBIT_HD static constexpr float to_float(fp16 s) noexcept { return s.to_float(); }
  LOWBIT_HD static constexpr fp16 from_float(float s) noexcept { return fp16(s); }
};
template <>
struct scale_traits<bf16> {
  static constexpr const char* name = "bf16";
  LOWBIT_HD static constexpr float to_float(bf16 s) noexcept { return s.to_float(); }
  LOWBIT_HD static constexpr bf16 from_float(float s) noexcept { return bf16(s); }
};
template <>
struct scale_traits<e8m0> {
  static constexpr const char* name = "e8m0";
  LOWBIT_HD static constexpr float to_float(e8m0 s) noexcept { return format_traits<e8m0>::decode(s.storage); }
  /// Rounds up to the next power of two, so a scale chosen to fit a group still fits after rounding;
  /// zero becomes the smallest scale and inf or NaN becomes NaN (which quantizers reject).
  LOWBIT_HD static e8m0 from_float(float s) noexcept {
    int exponent = 0;
    const float mantissa = std::frexp(s, &exponent);  // s = mantissa * 2^exponent, mantissa in [0.5, 1)
    int e = (mantissa == 0.5f) ? exponent - 1 : exponent;
    if (std::isnan(s) || std::isinf(s)) return e8m0::from_bits(0xFF);  // E8M0 has no inf: NaN
    if (!(s > 0.0f)) return e8m0::from_bits(0);  // no zero either: the smallest scale, 2^-127
    e = e < -127 ? -127 : (e > 127 ? 127 : e);
    return e8m0::from_bits(static_cast<uint8_t>(e + 127));
  }
};

/// A quantization scheme: each element is a code of Format; each group of `group_size` consecutive
/// elements along a row (the reduction dimension K) shares one Scale, and, when HasZero, one
/// zero point stored as a code of Format. Element value = (decode(code) - decode(zero)) * scale,
/// or decode(code) * scale without a zero point.
template <class Format, class Scale = float, bool HasZero = false>
struct scheme {
  using format = Format;
  using scale_type = Scale;
  static constexpr bool has_zero = HasZero;
  static constexpr int bits = format_traits<Format>::bits;
  static_assert(!HasZero || format_traits<Format>::kind == format_kind::integer,
                "zero points are for integer formats (uint4/uint8 min-max quantization)");
};

template <class T>
struct is_scheme : std::false_type {};
template <class F, class S, bool Z>
struct is_scheme<scheme<F, S, Z>> : std::true_type {};

/// Storage bits per element with the given group size, scales and zero points included.
template <class Scheme>
constexpr double bits_per_weight(std::size_t group_size) noexcept {
  return Scheme::bits + (8.0 * sizeof(typename Scheme::scale_type) + (Scheme::has_zero ? 8.0 : 0.0)) /
                            static_cast<double>(group_size);
}

/// The OCP Microscaling v1.0 block formats: elements share an E8M0 scale per block of 32.
namespace mx {
inline constexpr std::size_t block_size = 32;
using fp8_e4m3 = scheme<lowbit::fp8_e4m3, e8m0>;
using fp8_e5m2 = scheme<lowbit::fp8_e5m2, e8m0>;
using fp6_e3m2 = scheme<lowbit::fp6_e3m2, e8m0>;
using fp6_e2m3 = scheme<lowbit::fp6_e2m3, e8m0>;
using fp4 = scheme<fp4_e2m1, e8m0>;
using int8 = scheme<mxint8, e8m0>;
using int4 = scheme<mxint4, e8m0>;
}  // namespace mx

}  // namespace lowbit
