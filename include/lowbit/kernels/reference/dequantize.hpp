/// \file
/// \brief Scalar reference dequantization: the definition every SIMD path is tested against, bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../core/half.hpp"
#include "../../layout/quantized_matrix.hpp"

namespace lowbit {
namespace reference {

/// Value of element k of row r: (decode(code) - decode(zero)) * scale, computed in float in that
/// order (one subtraction, exact for integer codes, then one rounding multiply). SIMD paths
/// compute the same operations, so they agree bit for bit.
template <class Scheme>
float dequantize_element(const quantized_view<Scheme>& w, std::size_t r, std::size_t k) noexcept {
  using traits = format_traits<typename Scheme::format>;
  const std::size_t group = k / w.group_size();
  const float scale = scale_traits<typename Scheme::scale_type>::to_float(w.row_scales(r)[group]);
  float value = traits::decode(w.code(r, k));
  if (Scheme::has_zero) value = value - traits::decode(w.row_zeros(r)[group]);
  return value * scale;
}

/// Dequantizes rows [row_begin, row_end) into out (row r at out + (r - row_begin) * ld_out).
template <class Scheme, class Out>
void dequantize_rows(const quantized_view<Scheme>& w, std::size_t row_begin, std::size_t row_end, Out* out,
                     std::size_t ld_out) noexcept {
  for (std::size_t r = row_begin; r < row_end; ++r) {
    Out* row = out + (r - row_begin) * ld_out;
    for (std::size_t k = 0; k < w.cols(); ++k) row[k] = Out(dequantize_element(w, r, k));
  }
}

}  // namespace reference
}  // namespace lowbit
