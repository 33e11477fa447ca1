/// \file
/// \brief NF4 (QLoRA's 4-bit NormalFloat): the exact bitsandbytes table.
///
/// Source: bitsandbytes functional.py get_4bit_type('nf4'), the float32 values of
/// create_normal_map(offset=0.9677083): 8 positive quantiles of N(0, 1) at probabilities
/// linspace(0.9677083, 0.5, 9)[:-1], 7 negative ones at linspace(0.9677083, 0.5, 8)[:-1], and 0,
/// divided by the largest. tests/formats recomputes it from that construction.
#pragma once

#include "codebook.hpp"

namespace lowbit {

struct nf4 : format_value<nf4> {
  using format_value<nf4>::format_value;
};

struct nf4_table {
  static constexpr float values[16] = {
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
      -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
      0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
      0.7229568362236023f, 1.0f};
};

template <>
struct format_traits<nf4> : codebook_traits<nf4_table> {
  static constexpr const char* name = "nf4";
};
template <>
struct sizeof_bits<nf4> {
  static constexpr int value = 4;
};

}  // namespace lowbit

LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::nf4)
