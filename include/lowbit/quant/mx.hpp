/// \file
/// \brief OCP Microscaling (MX v1.0) quantization: a shared E8M0 exponent per block, elements rounded to nearest even.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "rtn.hpp"

namespace lowbit {

/// Quantizes w (rows x cols, row stride ld) to an MX scheme (mx::fp4, mx::fp8_e4m3, mx::int8, ...)
/// as the OCP MX v1.0 spec computes it: per block of `block_size` elements along a row,
/// X = floor(log2(max|v|)) - emax_elem, clamped to the E8M0 range [-127, 127]; each v / 2^X is
/// rounded to nearest even in the element format and saturated to its largest magnitude. A block
/// of zeros takes X = -127 and all-zero codes (microxcaling substitutes the smallest float normal
/// for a zero maximum, which clamps to the same X). Non-finite inputs raise lowbit::error: the
/// spec's NaN scale would poison the whole block, and a weight matrix should never hold one.
/// The last block of a row is shorter when block_size does not divide cols.
template <class Scheme>
quantized_matrix<Scheme> quantize_mx(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                     std::size_t block_size = mx::block_size) {
  using traits = format_traits<typename Scheme::format>;
  static_assert(std::is_same<typename Scheme::scale_type, e8m0>::value, "quantize_mx needs an E8M0-scaled scheme");
  static_assert(!Scheme::has_zero, "MX formats have no zero point");
  detail::check_float_matrix("quantize_mx", w, rows, cols, ld);
  quantized_matrix<Scheme> q(rows, cols, block_size);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t block = 0; block < q.groups_per_row(); ++block) {
      const std::size_t k0 = block * block_size, k1 = std::min(cols, k0 + block_size);
      float absmax = 0.0f;
      for (std::size_t k = k0; k < k1; ++k) absmax = std::max(absmax, std::fabs(w[r * ld + k]));
      int shared_exponent = -127;
      if (absmax > 0.0f) {
        int e = 0;
        std::frexp(absmax, &e);  // absmax = m * 2^e with m in [0.5, 1): floor(log2(absmax)) = e - 1
        shared_exponent = std::max(-127, std::min(127, e - 1 - traits::emax));
      }
      q.scale(r, block) = e8m0::from_bits(static_cast<uint8_t>(shared_exponent + 127));
      for (std::size_t k = k0; k < k1; ++k) {
        // Exact in double: v / 2^X cannot overflow or lose bits there, whatever X is.
        const float scaled = static_cast<float>(std::ldexp(static_cast<double>(w[r * ld + k]), -shared_exponent));
        q.set_code(r, k, traits::encode(scaled, overflow::saturate));
      }
    }
  }
  return q;
}

}  // namespace lowbit
