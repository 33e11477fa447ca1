/// \file
/// \brief OCP FP8: E4M3 (the "fn" variant: no infinities, max 448) and E5M2 (IEEE-like, max 57344).
#pragma once

#include "minifloat.hpp"

namespace lowbit {

struct fp8_e4m3 : format_value<fp8_e4m3> {
  using format_value<fp8_e4m3>::format_value;
};
struct fp8_e5m2 : format_value<fp8_e5m2> {
  using format_value<fp8_e5m2>::format_value;
};

template <>
struct format_traits<fp8_e4m3> : minifloat_traits<4, 3, 7, minifloat_specials::nan_only> {
  static constexpr const char* name = "fp8_e4m3";
};
template <>
struct format_traits<fp8_e5m2> : minifloat_traits<5, 2, 15, minifloat_specials::ieee> {
  static constexpr const char* name = "fp8_e5m2";
};

static_assert(format_traits<fp8_e4m3>::max_finite == 448.0f, "E4M3 max is 448 (S.1111.110)");
static_assert(format_traits<fp8_e5m2>::max_finite == 57344.0f, "E5M2 max is 57344");
static_assert(format_traits<fp8_e4m3>::emax == 8 && format_traits<fp8_e5m2>::emax == 15, "OCP MX emax_elem");

}  // namespace lowbit

LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::fp8_e4m3)
LOWBIT_FORMAT_NUMERIC_LIMITS(lowbit::fp8_e5m2)
