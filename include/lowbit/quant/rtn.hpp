/// \file
/// \brief Round-to-nearest quantization: absmax symmetric, or min-max asymmetric with zero points.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "../core/error.hpp"
#include "../layout/quantized_matrix.hpp"

namespace lowbit {

/// Options shared by the quantizers. group_size 0 means per output channel (one group per row).
struct quant_options {
  std::size_t group_size = 0;
  bool per_tensor = false;   ///< one scale (and zero) for the whole matrix, stored in every group
  float clip_ratio = 1.0f;   ///< shrink the range before choosing the scale (1 = no clipping)
};

namespace detail {

/// Checks the float input of a quantizer: shape, leading dimension, pointer, every value finite.
inline void check_float_matrix(const char* who, const float* w, std::size_t rows, std::size_t cols, std::size_t ld) {
  LOWBIT_CHECK(w != nullptr, who << ": weights pointer is null");
  LOWBIT_CHECK(rows > 0 && cols > 0, who << ": rows=" << rows << " and cols=" << cols << " must be positive");
  LOWBIT_CHECK(ld >= cols, who << ": leading dimension " << ld << " is smaller than cols=" << cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < cols; ++k)
      LOWBIT_CHECK(std::isfinite(w[r * ld + k]), who << ": weight (" << r << ", " << k << ") = " << w[r * ld + k]
                                                     << " is not finite");
}

/// Stores a scale in the scheme's scale type and returns the value kernels will read back.
template <class Scale>
float store_scale(Scale& slot, float scale) {
  slot = scale_traits<Scale>::from_float(scale);
  const float stored = scale_traits<Scale>::to_float(slot);
  LOWBIT_CHECK(std::isfinite(stored), "quantize: scale " << scale << " does not fit the " << scale_traits<Scale>::name
                                                          << " scale type");
  return stored;
}

/// Symmetric scale: the value of largest magnitude maps onto the end of the format's range on its
/// own side (int4: -8 for a negative extreme, 7 for a positive one), as ggml's q4_0 does; formats
/// with a symmetric range reduce to absmax / max_finite.
template <class Format>
float symmetric_scale(float extreme) noexcept {
  using traits = format_traits<Format>;
  if (extreme < 0 && traits::min_value < 0) return extreme / traits::min_value;
  return std::fabs(extreme) / traits::max_finite;
}

}  // namespace detail

/// Quantizes the rows x cols float matrix w (row stride ld) with round-to-nearest-even codes.
/// Without zero points: symmetric, scale from the group's extreme value. With zero points
/// (integer formats): asymmetric over [min(w, 0), max(w, 0)], zero point = round(qmin - lo / scale).
/// Non-finite weights, and scales the scale type cannot hold, raise lowbit::error.
template <class Scheme>
quantized_matrix<Scheme> quantize_rtn(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                      const quant_options& options = {}) {
  using format = typename Scheme::format;
  using traits = format_traits<format>;
  detail::check_float_matrix("quantize_rtn", w, rows, cols, ld);
  LOWBIT_CHECK(options.clip_ratio > 0.0f && options.clip_ratio <= 1.0f,
               "quantize_rtn: clip_ratio=" << options.clip_ratio << " must be in (0, 1]");
  quantized_matrix<Scheme> q(rows, cols, options.group_size);
  const std::size_t g = q.group_size();

  // Range of one group, or of the whole matrix when per_tensor.
  auto range = [&](std::size_t r0, std::size_t r1, std::size_t k0, std::size_t k1, float& lo, float& hi, float& extreme) {
    lo = 0.0f, hi = 0.0f, extreme = 0.0f;
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t k = k0; k < k1; ++k) {
        const float v = w[r * ld + k];
        lo = std::min(lo, v), hi = std::max(hi, v);
        if (std::fabs(v) > std::fabs(extreme)) extreme = v;
      }
    lo *= options.clip_ratio, hi *= options.clip_ratio, extreme *= options.clip_ratio;
  };
  float tensor_lo = 0, tensor_hi = 0, tensor_extreme = 0;
  if (options.per_tensor) range(0, rows, 0, cols, tensor_lo, tensor_hi, tensor_extreme);

  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t group = 0; group < q.groups_per_row(); ++group) {
      const std::size_t k0 = group * g, k1 = std::min(cols, k0 + g);
      float lo = tensor_lo, hi = tensor_hi, extreme = tensor_extreme;
      if (!options.per_tensor) range(r, r + 1, k0, k1, lo, hi, extreme);
      float zero = 0.0f;
      float scale = 0.0f;
      if constexpr (Scheme::has_zero) {
        scale = detail::store_scale(q.scale(r, group), (hi - lo) / (traits::max_finite - traits::min_value));
        zero = scale > 0.0f ? std::nearbyint(traits::min_value - lo / scale) : 0.0f;
        zero = std::min(std::max(zero, traits::min_value), traits::max_finite);
        q.zero(r, group) = traits::encode(zero);
        zero = traits::decode(q.zero(r, group));
      } else {
        scale = detail::store_scale(q.scale(r, group), detail::symmetric_scale<format>(extreme));
      }
      for (std::size_t k = k0; k < k1; ++k) {
        const float x = scale > 0.0f ? w[r * ld + k] / scale + zero : zero;
        q.set_code(r, k, traits::encode(x));
      }
    }
  }
  return q;
}

}  // namespace lowbit
