/// \file
/// \brief IQ4_NL: ggml's non-linear 4-bit codebook (kvalues_iq4nl in ggml-common.h), integer values.
///
/// Values -127 .. 113, multiplied by a block's fp16 scale d (ggml: blocks of 32). The table is not
/// symmetric: the largest magnitude is on the negative side, and lowbit's symmetric quantizer maps
/// a block's extreme value onto -127 or 113 by its sign.
#pragma once

#include "codebook.hpp"

namespace lowbit {

struct iq4_nl : format_value<iq4_nl> {
  using format_value<iq4_nl>::format_value;
};

struct iq4_nl_table {
  static constexpr float values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
};

template <>
struct format_traits<iq4_nl> : codebook_traits<iq4_nl_table> {
  static constexpr const char* name = "iq4_nl";
};
template <>
struct sizeof_bits<iq4_nl> {
  static constexpr int value = 4;
};

}  // namespace lowbit

LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::iq4_nl)
