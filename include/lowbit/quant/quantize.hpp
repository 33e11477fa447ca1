/// \file
/// \brief quantize<Scheme>(): the scheme's standard round-to-nearest quantizer (MX rules for MX schemes, RTN otherwise).
#pragma once

#include <type_traits>

#include "mx.hpp"
#include "rtn.hpp"

namespace lowbit {

/// True for OCP MX schemes: E8M0 scales over a float or fixed-point element format.
template <class Scheme>
struct is_mx_scheme
    : std::integral_constant<bool, std::is_same<typename Scheme::scale_type, e8m0>::value && !Scheme::has_zero &&
                                       (format_traits<typename Scheme::format>::kind == format_kind::floating ||
                                        format_traits<typename Scheme::format>::kind == format_kind::fixed_point)> {};

/// Quantizes w with quantize_mx for MX schemes (block size options.group_size, or 32 when 0) and
/// with quantize_rtn otherwise.
template <class Scheme>
quantized_matrix<Scheme> quantize(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                  const quant_options& options = {}) {
  if constexpr (is_mx_scheme<Scheme>::value) {
    LOWBIT_CHECK(!options.per_tensor && options.clip_ratio == 1.0f,
                 "quantize: MX schemes take neither per_tensor nor clip_ratio");
    return quantize_mx<Scheme>(w, rows, cols, ld, options.group_size ? options.group_size : mx::block_size);
  } else {
    return quantize_rtn<Scheme>(w, rows, cols, ld, options);
  }
}

}  // namespace lowbit
