/// \file
/// \brief Every element format, and type lists that generic code and tests iterate over.
#pragma once

#include "bnb_fp4.hpp"
#include "codebook.hpp"
#include "e8m0.hpp"
#include "format.hpp"
#include "fp4.hpp"
#include "fp6.hpp"
#include "fp8.hpp"
#include "int.hpp"
#include "iq4_nl.hpp"
#include "minifloat.hpp"
#include "mxint.hpp"
#include "nf4.hpp"
#include "sf4.hpp"

namespace lowbit {

template <class... Types>
struct type_list {
  static constexpr std::size_t size = sizeof...(Types);
};

/// Every element format (E8M0 is a scale format and not among them).
using element_formats = type_list<int4, uint4, int8, uint8, fp8_e4m3, fp8_e5m2, fp6_e3m2, fp6_e2m3, fp4_e2m1, nf4,
                                  sf4, iq4_nl, mxint8, mxint4>;

/// Calls f(Format{}) for each format in the list.
template <class... Types, class F>
void for_each_type(type_list<Types...>, F&& f) {
  (f(Types{}), ...);
}

}  // namespace lowbit
