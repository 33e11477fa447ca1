/// \file
/// \brief bitsandbytes' FP4: a 4-bit float of its own (not OCP E2M1), as a sorted codebook.
///
/// bitsandbytes decodes code c as sign(c & 8) * lut[c & 7] with lut = {0, 1/192, 2/3, 1, 1/3,
/// 1/2, 1/6, 1/4} (float32 constants of its kernels and of QuantState.code). lowbit keeps the same
/// 16 values, ascending (so the codebook machinery applies), and maps bitsandbytes' codes onto
/// them with bnb_fp4_code(). -0 and +0 are both kept, so every value keeps its sign bit.
#pragma once

#include <cstdint>

#include "codebook.hpp"
#include "value.hpp"

namespace lowbit {

struct bnb_fp4 : format_value<bnb_fp4> {
  using format_value<bnb_fp4>::format_value;
};

struct bnb_fp4_table {
  static constexpr float values[16] = {-1.0f, -0.6666667f, -0.5f, -0.33333334f, -0.25f, -0.16666667f, -0.0052083335f, -0.0f,
                                       0.0f,  0.0052083335f, 0.16666667f, 0.25f, 0.33333334f, 0.5f, 0.6666667f, 1.0f};
};

template <>
struct format_traits<bnb_fp4> : codebook_traits<bnb_fp4_table> {
  static constexpr const char* name = "bnb_fp4";
};
template <>
struct sizeof_bits<bnb_fp4> {
  static constexpr int value = 4;
};

/// lowbit's bnb_fp4 code for bitsandbytes' FP4 code c (0..15).
LOWBIT_HD constexpr uint8_t bnb_fp4_code(uint8_t c) noexcept {
  // bitsandbytes' magnitudes 0, 1/192, 2/3, 1, 1/3, 1/2, 1/6, 1/4 sit at these ranks among the positives.
  constexpr uint8_t positive_rank[8] = {0, 1, 6, 7, 4, 5, 2, 3};
  const uint8_t rank = positive_rank[c & 7];
  return static_cast<uint8_t>((c & 8) ? 7 - rank : 8 + rank);
}

}  // namespace lowbit
