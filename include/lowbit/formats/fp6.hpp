/// \file
/// \brief OCP MX FP6 elements: E3M2 (max 28) and E2M3 (max 7.5), no infinities or NaN.
#pragma once

#include "minifloat.hpp"

namespace lowbit {

struct fp6_e3m2 : format_value<fp6_e3m2> {
  using format_value<fp6_e3m2>::format_value;
};
struct fp6_e2m3 : format_value<fp6_e2m3> {
  using format_value<fp6_e2m3>::format_value;
};

template <>
struct format_traits<fp6_e3m2> : minifloat_traits<3, 2, 3, minifloat_specials::none> {
  static constexpr const char* name = "fp6_e3m2";
};
template <>
struct format_traits<fp6_e2m3> : minifloat_traits<2, 3, 1, minifloat_specials::none> {
  static constexpr const char* name = "fp6_e2m3";
};
template <>
struct sizeof_bits<fp6_e3m2> {
  static constexpr int value = 6;
};
template <>
struct sizeof_bits<fp6_e2m3> {
  static constexpr int value = 6;
};

static_assert(format_traits<fp6_e3m2>::max_finite == 28.0f && format_traits<fp6_e2m3>::max_finite == 7.5f,
              "OCP MX FP6 maxima");
static_assert(format_traits<fp6_e3m2>::emax == 4 && format_traits<fp6_e2m3>::emax == 2, "OCP MX emax_elem");

}  // namespace lowbit

LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::fp6_e3m2)
LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::fp6_e2m3)
