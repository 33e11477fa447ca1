/// \file
/// \brief OCP MX FP4 E2M1: codes 0..7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6; codes 8..15 the same negated.
#pragma once

#include "minifloat.hpp"

namespace lowbit {

struct fp4_e2m1 : format_value<fp4_e2m1> {
  using format_value<fp4_e2m1>::format_value;
};

template <>
struct format_traits<fp4_e2m1> : minifloat_traits<2, 1, 1, minifloat_specials::none> {
  static constexpr const char* name = "fp4_e2m1";
};
template <>
struct sizeof_bits<fp4_e2m1> {
  static constexpr int value = 4;
};

static_assert(format_traits<fp4_e2m1>::max_finite == 6.0f && format_traits<fp4_e2m1>::emax == 2, "E2M1 max 6");
static_assert(format_traits<fp4_e2m1>::decode(3) == 1.5f && format_traits<fp4_e2m1>::decode(13) == -3.0f, "E2M1 codes");

}  // namespace lowbit

LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::fp4_e2m1)
