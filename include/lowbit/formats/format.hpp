/// \file
/// \brief The contract every element format follows: a one-byte value type plus format_traits.
///
/// A format is a type (`lowbit::fp8_e4m3`, `lowbit::nf4`, ...). The type itself is a value type
/// holding one code in a byte, in the manner of CUTLASS's `float_e4m3_t` / `int4b_t`; the code
/// space, the scalar reference conversions and the facts kernels need live in
/// `format_traits<Format>`:
///
///   static constexpr const char* name;        // "fp8_e4m3", "nf4", ...
///   static constexpr int bits;                // bits per code (4, 6, 8)
///   static constexpr bool is_signed;          // has negative values
///   static constexpr format_kind kind;        // integer, floating, codebook, fixed_point, scale
///   static constexpr bool has_codebook;       // decode is a table lookup of 2^bits floats
///   static constexpr float max_finite;        // largest finite magnitude (integers: qmax)
///   static constexpr float min_value;         // most negative finite value (for asymmetric quant)
///   static constexpr int emax;                // exponent of the largest normal (OCP MX emax_elem)
///   LOWBIT_HD static constexpr float decode(uint8_t code) noexcept;          // code < 2^bits
///   LOWBIT_HD static constexpr uint8_t encode(float x, overflow mode = overflow::saturate) noexcept;
///   static constexpr float codebook[16];      // only for has_codebook formats
///
/// encode rounds to nearest, ties to even (codebooks: nearest table value, ties to the even code
/// index) and never returns a code >= 2^bits. decode(encode(x)) is the value kernels compute with.
#pragma once

#include <cstdint>

#include "../core/config.hpp"

namespace lowbit {

/// What a code means.
enum class format_kind {
  integer,      ///< two's complement or unsigned integer (int4, uint4, int8, uint8)
  fixed_point,  ///< integer with an implicit power-of-two scale (MXINT8, MXINT4)
  floating,     ///< sign-exponent-mantissa minifloat (FP8, FP6, FP4)
  codebook,     ///< index into a table of values (NF4, SF4, IQ4_NL)
  scale,        ///< a scale-only format (E8M0)
};

/// What encode does with a value beyond the largest finite one (and with +-inf).
enum class overflow {
  saturate,  ///< clamp to +-max_finite (lowbit's default for quantization; NaN stays NaN)
  cast,      ///< what ml_dtypes / PyTorch casts do: E4M3 -> NaN, E5M2 -> inf, FP6/FP4 saturate
};

template <class Format>
struct format_traits;  // specialized by each format header

/// Number of bits a value of T occupies in packed storage (CUTLASS's sizeof_bits).
template <class T>
struct sizeof_bits {
  static constexpr int value = static_cast<int>(sizeof(T) * 8);
};

}  // namespace lowbit
