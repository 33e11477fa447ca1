/// \file
/// \brief SF4 (Student Float, Dotzel et al., arXiv 2405.03103): NF4's construction over Student-t, 5 dof.
///
/// The table is bitsandbytes' NF4 procedure with the normal quantile replaced by the Student-t
/// (nu = 5) quantile: probabilities linspace(0.9677083, 0.5, 9)[:-1] and linspace(0.9677083,
/// 0.5, 8)[:-1] computed in float32 as torch.linspace does, quantiles in double, normalized by
/// the largest, rounded to float32. The same procedure reproduces bitsandbytes' NF4 table to
/// 4.3e-8; the paper's published values agree to 1e-7 (they used a float64 linspace).
/// tests/formats recomputes it.
#pragma once

#include "codebook.hpp"

namespace lowbit {

struct sf4 : format_value<sf4> {
  using format_value<sf4>::format_value;
};

struct sf4_table {
  static constexpr float values[16] = {
      -1.0f, -0.6277806162834167f, -0.4547361433506012f, -0.33433082699775696f, -0.2374344915151596f,
      -0.15289875864982605f, -0.07498252391815186f, 0.0f, 0.06551307439804077f, 0.13296478986740112f,
      0.20466108620166779f, 0.283834844827652f, 0.37580499053001404f, 0.49107569456100464f,
      0.6567813754081726f, 1.0f};
};

template <>
struct format_traits<sf4> : codebook_traits<sf4_table> {
  static constexpr const char* name = "sf4";
};
template <>
struct sizeof_bits<sf4> {
  static constexpr int value = 4;
};

}  // namespace lowbit

LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::sf4)
