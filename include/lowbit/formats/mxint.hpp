/// \file
/// \brief OCP MX fixed-point elements: MXINT8 (int8 x 2^-6) and MXINT4 (int4 x 2^-2).
///
/// MXINT8 is 1 sign, 1 integer and 6 fraction bits; MXINT4 (LQER, arXiv 2402.02446) 1 sign,
/// 1 integer, 2 fraction bits. Like microsoft/microxcaling (which clamps to +-max_norm =
/// +-(2 - 2^(2 - mbits))), encode keeps the range symmetric: MXINT8 in [-127, 127] x 2^-6 and
/// MXINT4 in [-7, 7] x 2^-2. The codes -128 and -8 still decode (to -2) but are never produced.
#pragma once

#include "int.hpp"

namespace lowbit {

struct mxint8 : format_value<mxint8> {
  using format_value<mxint8>::format_value;
};
struct mxint4 : format_value<mxint4> {
  using format_value<mxint4>::format_value;
};

template <>
struct format_traits<mxint8> : integer_traits<8, true, -127, 127, -6> {
  static constexpr const char* name = "mxint8";
};
template <>
struct format_traits<mxint4> : integer_traits<4, true, -7, 7, -2> {
  static constexpr const char* name = "mxint4";
};
template <>
struct sizeof_bits<mxint4> {
  static constexpr int value = 4;
};

static_assert(format_traits<mxint8>::max_finite == 127.0f / 64, "MXINT8 max 1.984375");
static_assert(format_traits<mxint4>::decode(0x9) == -1.75f, "MXINT4 code 1001 is -7/4");

}  // namespace lowbit

LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::mxint8)
LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::mxint4)
