/// \file
/// \brief Dynamic per-token int8 activations for the integer GEMM path (W8A8 / W4A8).
///
/// Row m of x becomes q[m][k] = round_half_even(x[m][k] / c[k] * 127 / amax_m) in [-127, 127] with
/// scale[m] = amax_m / 127 (amax_m = max_k |x[m][k] / c[k]|; c = the SmoothQuant per-channel
/// activation scales, or 1), so x[m][k] / c[k] ~ q[m][k] * scale[m]. Symmetric, so the GEMM needs
/// no activation zero point; -128 is never produced, which keeps u8 x s8 products in range.
/// Rows are padded with zeros to a multiple of 8 columns, and the sum of q over each group of
/// `group_size` columns is kept: the integer kernel's zero-point correction.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../core/aligned.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/views.hpp"

namespace lowbit {

class int8_activations {
 public:
  static constexpr std::size_t column_padding = 8;

  int8_activations() = default;

  /// Quantizes x (rows x cols, finite values) for a weight matrix with groups of group_size
  /// columns; channel_scales (cols values, positive and finite: others are a lowbit::error) is null
  /// or SmoothQuant's per-channel c.
  /// Reuses this object's buffers when they are large enough.
  template <class Executor = serial_executor>
  void quantize(matrix_view<const float> x, std::size_t group_size, const float* channel_scales = nullptr,
                Executor&& exec = Executor{}) {
    x.validate("int8_activations: x");
    LOWBIT_CHECK(group_size > 0 && group_size <= x.cols,
                 "int8_activations: group_size=" << group_size << " must be in [1, cols=" << x.cols << "]");
    if (channel_scales != nullptr) {  // a zero, negative or NaN c[k] would divide x into inf / NaN or flip signs
      for (std::size_t k = 0; k < x.cols; ++k)
        LOWBIT_CHECK(std::isfinite(channel_scales[k]) && channel_scales[k] > 0.0f,
                     "int8_activations: channel_scales[" << k << "] = " << channel_scales[k]
                                                         << " must be positive and finite");
    }
    rows_ = x.rows;
    cols_ = x.cols;
    group_size_ = group_size;
    padded_cols_ = (cols_ + column_padding - 1) / column_padding * column_padding;
    groups_ = (cols_ + group_size - 1) / group_size;
    if (q_.size() < rows_ * padded_cols_) q_ = aligned_buffer<int8_t>(rows_ * padded_cols_);
    if (scales_.size() < rows_) scales_ = aligned_buffer<float>(rows_);
    if (sums_.size() < rows_ * groups_) sums_ = aligned_buffer<int32_t>(rows_ * groups_);
    if (prefix_.size() < rows_ * prefix_stride()) prefix_ = aligned_buffer<int32_t>(rows_ * prefix_stride());
    exec(rows_, [&](std::size_t begin, std::size_t end) {
      for (std::size_t m = begin; m < end; ++m) quantize_row(x.row(m), channel_scales, m);
    });
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t padded_cols() const noexcept { return padded_cols_; }
  std::size_t group_size() const noexcept { return group_size_; }
  std::size_t groups() const noexcept { return groups_; }
  /// Row m: padded_cols() values, zero past cols().
  const int8_t* row(std::size_t m) const noexcept { return q_.data() + m * padded_cols_; }
  float scale(std::size_t m) const noexcept { return scales_[m]; }
  /// Sum of row m's q over group g.
  int32_t group_sum(std::size_t m, std::size_t g) const noexcept { return sums_[m * groups_ + g]; }
  const int32_t* group_sums(std::size_t m) const noexcept { return sums_.data() + m * groups_; }
  /// Row m's sums of q over its first 4j columns, j = 0 .. padded_cols() / 4: the sum over any
  /// range of whole 4-column quads is a difference of two (the integer kernel's K blocks).
  const int32_t* quad_prefix(std::size_t m) const noexcept { return prefix_.data() + m * prefix_stride(); }

 private:
  void quantize_row(const float* x, const float* channel_scales, std::size_t m) noexcept {
    // Locals, not members: stores through the int8_t pointer could alias them and stop vectorization.
    const std::size_t cols = cols_, padded_cols = padded_cols_, groups = groups_, group_size = group_size_;
    // max |x| as the largest magnitude bit pattern: an integer max, which vectorizes (a float max
    // does not without -ffast-math). A NaN has the largest pattern and makes the row's scale NaN.
    uint32_t amax_bits = 0;
    for (std::size_t k = 0; k < cols; ++k) {
      uint32_t b;
      const float v = channel_scales ? x[k] / channel_scales[k] : x[k];
      std::memcpy(&b, &v, 4);
      b &= 0x7FFFFFFFu;
      amax_bits = b > amax_bits ? b : amax_bits;
    }
    float amax;
    std::memcpy(&amax, &amax_bits, 4);
    const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    const float inverse = 1.0f / scale;
    scales_[m] = scale;
    int8_t* q = q_.data() + m * padded_cols;
    // (v + 1.5 * 2^23) - 1.5 * 2^23 rounds |v| <= 2^22 to the nearest integer, ties to even, and
    // vectorizes where lrint does not. The clamp also sends NaN to -127 (no undefined conversion).
    constexpr float magic = 12582912.0f;
    for (std::size_t k = 0; k < cols; ++k) {
      const float v = channel_scales ? x[k] / channel_scales[k] * inverse : x[k] * inverse;
      float r = (v + magic) - magic;
      r = r > 127.0f ? 127.0f : r;
      r = r >= -127.0f ? r : -127.0f;
      q[k] = static_cast<int8_t>(r);
    }
    std::memset(q + cols, 0, padded_cols - cols);
    // Quad sums first, from 32-bit loads by shifts (which vectorize; byte loads did not), then one
    // add per quad for the prefix; the group sums are differences of it when groups are whole quads.
    int32_t* prefix = prefix_.data() + m * prefix_stride();
    const std::size_t quads = padded_cols / 4;
    for (std::size_t j = 0; j < quads; ++j) {
      uint32_t u;
      std::memcpy(&u, q + 4 * j, 4);
      prefix[j + 1] = (static_cast<int32_t>(u << 24) >> 24) + (static_cast<int32_t>(u << 16) >> 24) +
                      (static_cast<int32_t>(u << 8) >> 24) + (static_cast<int32_t>(u) >> 24);
    }
    prefix[0] = 0;
    for (std::size_t j = 0; j < quads; ++j) prefix[j + 1] += prefix[j];
    int32_t* sums = sums_.data() + m * groups;
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t begin = g * group_size, end = std::min(cols, begin + group_size);
      if (group_size % 4 == 0) {
        sums[g] = prefix[(end + 3) / 4] - prefix[begin / 4];  // past cols: zeros of the padding
      } else {
        int32_t s = 0;
        for (std::size_t k = begin; k < end; ++k) s += q[k];
        sums[g] = s;
      }
    }
  }

  std::size_t prefix_stride() const noexcept { return padded_cols_ / 4 + 1; }

  std::size_t rows_ = 0, cols_ = 0, padded_cols_ = 0, group_size_ = 0, groups_ = 0;
  aligned_buffer<int8_t> q_;
  aligned_buffer<float> scales_;
  aligned_buffer<int32_t> sums_;
  aligned_buffer<int32_t> prefix_;
};

}  // namespace lowbit
