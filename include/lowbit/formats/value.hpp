/// \file
/// \brief format_value: the one-byte value type every element format is (CUTLASS's float_e4m3_t idea).
#pragma once

#include <cstdint>
#include <limits>

#include "format.hpp"

namespace lowbit {

/// Base of every format type: one byte of storage holding a code, explicit conversions through
/// format_traits<Derived>. `Derived` is the format (fp8_e4m3, nf4, ...).
template <class Derived>
struct format_value {
  uint8_t storage = 0;

  constexpr format_value() = default;
  /// Saturating, round-to-nearest-even encode (format_traits<Derived>::encode).
  LOWBIT_HD constexpr explicit format_value(float x) noexcept : storage(format_traits<Derived>::encode(x)) {}
  LOWBIT_HD static constexpr Derived from_bits(uint8_t code) noexcept {
    Derived d{};
    d.storage = code;
    return d;
  }
  LOWBIT_HD constexpr explicit operator float() const noexcept { return format_traits<Derived>::decode(storage); }
  LOWBIT_HD constexpr float to_float() const noexcept { return format_traits<Derived>::decode(storage); }
  LOWBIT_HD constexpr uint8_t bits() const noexcept { return storage; }
  friend constexpr bool operator==(Derived a, Derived b) noexcept { return a.storage == b.storage; }
  friend constexpr bool operator!=(Derived a, Derived b) noexcept { return a.storage != b.storage; }
};

namespace detail {

/// 2^n as a float for n in [-149, 127], exactly, in a constant expression.
LOWBIT_HD constexpr float pow2(int n) noexcept {
  if (n >= -126) return bit_cast<float>(static_cast<uint32_t>(n + 127) << 23);
  return bit_cast<float>(uint32_t(1) << (n + 149));  // a float subnormal
}

/// Round half to even of a float with |x| < 2^22 (exact: the addition rounds as the FPU does).
LOWBIT_HD constexpr float round_half_even(float x) noexcept {
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23: x + magic keeps no fraction bits
  return x >= 0 ? (x + magic) - magic : -((-x + magic) - magic);
}

}  // namespace detail

}  // namespace lowbit

/// std::numeric_limits for every format type, from its traits.
#define LOWBIT_FORMAT_NUMERIC_LIMITS(Format)                                                              \
  template <>                                                                                             \
  class std::numeric_limits<Format> {                                                                    \
   public:                                                                                                \
    static constexpr bool is_specialized = true;                                                          \
    static constexpr bool is_signed = lowbit::format_traits<Format>::is_signed;                            \
    static constexpr int digits = lowbit::format_traits<Format>::bits;                                     \
    static constexpr Format max() noexcept { return Format(lowbit::format_traits<Format>::max_finite); }  \
    static constexpr Format lowest() noexcept { return Format(lowbit::format_traits<Format>::min_value); } \
  };
