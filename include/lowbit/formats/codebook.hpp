/// \file
/// \brief codebook_traits: 4-bit formats whose codes index a sorted table of 16 values.
#pragma once

#include <cstdint>
#include <utility>

#include "value.hpp"

namespace lowbit {

namespace detail {
/// Table::values[i] for device code, which cannot read a host static array: each element becomes a
/// scalar constant (which device code may use) and one is selected.
template <class Table, std::size_t I>
struct codebook_constant {
  static constexpr float value = Table::values[I];
};
template <class Table, std::size_t... I>
LOWBIT_HD constexpr float codebook_select(unsigned i, std::index_sequence<I...>) noexcept {
  float v = 0.0f;
  ((v = (i == I) ? codebook_constant<Table, I>::value : v), ...);
  return v;
}
template <class Table>
LOWBIT_HD constexpr float codebook_value(unsigned i) noexcept {
#if defined(__CUDA_ARCH__)
  return codebook_select<Table>(i, std::make_index_sequence<16>{});
#else
  return Table::values[i];
#endif
}
}  // namespace detail

/// format_traits for a codebook format. Table provides `static constexpr float values[16]`,
/// ascending. encode picks the nearest value; at an exact midpoint (computed in float as
/// (a + b) * 0.5) it picks the lower one, as bitsandbytes' NF4 threshold tree does (x > midpoint
/// goes up). NaN encodes to the code nearest 0.
template <class Table>
struct codebook_traits {
  static constexpr int bits = 4;
  static constexpr bool is_signed = Table::values[0] < 0;
  static constexpr format_kind kind = format_kind::codebook;
  static constexpr bool has_codebook = true;
  static constexpr int emax = 0;
  static constexpr const float (&codebook)[16] = Table::values;
  static constexpr float max_finite = Table::values[15];  ///< largest value
  static constexpr float min_value = Table::values[0];    ///< most negative value

  LOWBIT_HD static constexpr float decode(uint8_t code) noexcept { return detail::codebook_value<Table>(code & 15u); }
  LOWBIT_HD static constexpr uint8_t encode(float x, overflow = overflow::saturate) noexcept {
    if (x != x) x = 0.0f;
    uint8_t code = 0;
    for (int i = 0; i < 15; ++i)
      if (x > (detail::codebook_value<Table>(i) + detail::codebook_value<Table>(i + 1)) * 0.5f) code = static_cast<uint8_t>(i + 1);
    return code;
  }
};

}  // namespace lowbit
