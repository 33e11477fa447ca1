/// \file
/// \brief codebook_traits: 4-bit formats whose codes index a sorted table of 16 values.
#pragma once

#include <cstdint>

#include "value.hpp"

namespace lowbit {

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

  LOWBIT_HD static constexpr float decode(uint8_t code) noexcept { return Table::values[code & 15]; }
  LOWBIT_HD static constexpr uint8_t encode(float x, overflow = overflow::saturate) noexcept {
    if (x != x) x = 0.0f;
    uint8_t code = 0;
    for (int i = 0; i < 15; ++i)
      if (x > (Table::values[i] + Table::values[i + 1]) * 0.5f) code = static_cast<uint8_t>(i + 1);
    return code;
  }
};

}  // namespace lowbit
