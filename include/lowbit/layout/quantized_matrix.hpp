/// \file
/// \brief quantized_matrix (owning) and quantized_view (borrowed): packed codes, scales and zero points.
///
/// Reference layout, row-major: row r holds `cols` codes as a little-endian bit stream of
/// row_bytes() = ceil(cols * bits / 8) bytes (4-bit: element 2j in the low nibble of byte j).
/// Row r's codes start at codes + r * row_bytes(). Scales and zero points are row-major
/// [rows x groups_per_row()]. A row of K elements with group size g has ceil(K / g) groups: when g
/// does not divide K the last group of each row is shorter (a "tail group"); groups never span rows.
/// Per-channel quantization is group_size == cols; per-tensor stores one scale in every group.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../core/aligned.hpp"
#include "../core/bits.hpp"
#include "../core/error.hpp"
#include "../scheme.hpp"

namespace lowbit {

/// Validated shape of a quantized matrix: rows (N, outputs) x cols (K, reduction) with a group size.
struct quantized_shape {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::size_t group_size = 0;

  std::size_t groups_per_row() const noexcept { return group_size ? (cols + group_size - 1) / group_size : 0; }
  std::size_t group_count() const noexcept { return rows * groups_per_row(); }
};

/// Checks a shape for a scheme of `bits` bits and names the offending numbers.
inline void check_quantized_shape(const quantized_shape& s) {
  LOWBIT_CHECK(s.rows > 0 && s.cols > 0, "quantized matrix: rows=" << s.rows << " and cols=" << s.cols
                                                                     << " must both be positive");
  LOWBIT_CHECK(s.group_size > 0 && s.group_size <= s.cols,
               "quantized matrix: group_size=" << s.group_size << " must be in [1, cols=" << s.cols << "]");
  LOWBIT_CHECK(s.rows <= (std::size_t(1) << 40) && s.cols <= (std::size_t(1) << 40),
               "quantized matrix: " << s.rows << " x " << s.cols << " is too large");
}

/// A borrowed quantized matrix. Kernels take views; interop returns them over file memory.
template <class Scheme>
struct quantized_view {
  using scheme_type = Scheme;
  using format = typename Scheme::format;
  using scale_type = typename Scheme::scale_type;
  static constexpr int bits = Scheme::bits;

  const uint8_t* codes = nullptr;       ///< rows x row_bytes(), reference packing
  const scale_type* scales = nullptr;   ///< rows x groups_per_row()
  const uint8_t* zeros = nullptr;       ///< rows x groups_per_row() zero-point codes, or null
  quantized_shape shape;

  std::size_t rows() const noexcept { return shape.rows; }
  std::size_t cols() const noexcept { return shape.cols; }
  std::size_t group_size() const noexcept { return shape.group_size; }
  std::size_t groups_per_row() const noexcept { return shape.groups_per_row(); }
  std::size_t row_bytes() const noexcept { return packed_bytes(shape.cols, bits); }
  const uint8_t* row_codes(std::size_t r) const noexcept { return codes + r * row_bytes(); }
  const scale_type* row_scales(std::size_t r) const noexcept { return scales + r * groups_per_row(); }
  const uint8_t* row_zeros(std::size_t r) const noexcept { return zeros ? zeros + r * groups_per_row() : nullptr; }
  uint8_t code(std::size_t r, std::size_t k) const noexcept { return get_packed_code(row_codes(r), k, bits); }

  /// Bytes a kernel must read to use the whole matrix.
  std::size_t storage_bytes() const noexcept {
    return shape.rows * row_bytes() + shape.group_count() * (sizeof(scale_type) + (Scheme::has_zero ? 1 : 0));
  }

  /// Throws lowbit::error unless the view is usable: shape valid, buffers present.
  void validate() const {
    check_quantized_shape(shape);
    LOWBIT_CHECK(codes != nullptr, "quantized_view: codes is null");
    LOWBIT_CHECK(scales != nullptr, "quantized_view: scales is null");
    LOWBIT_CHECK(!Scheme::has_zero || zeros != nullptr, "quantized_view: the scheme has zero points but zeros is null");
  }

  /// validate() plus a scan of the data that untrusted input needs: every scale finite, every
  /// zero point a valid code. O(groups); quantizers' output passes by construction.
  void validate_contents() const {
    validate();
    for (std::size_t i = 0; i < shape.group_count(); ++i) {
      const float s = scale_traits<scale_type>::to_float(scales[i]);
      LOWBIT_CHECK(std::isfinite(s), "quantized_view: scale " << i << " (row " << i / groups_per_row() << ", group "
                                                              << i % groups_per_row() << ") is not finite: " << s);
      if (Scheme::has_zero) {
        LOWBIT_CHECK(zeros[i] < (1u << bits), "quantized_view: zero point " << i << " = " << unsigned(zeros[i])
                                                                          << " is not a " << bits << "-bit code");
      }
    }
  }
};

/// Owns the storage of a quantized matrix, 64-byte aligned, in the reference layout.
template <class Scheme>
class quantized_matrix {
 public:
  using scheme_type = Scheme;
  using format = typename Scheme::format;
  using scale_type = typename Scheme::scale_type;
  static constexpr int bits = Scheme::bits;

  quantized_matrix() = default;
  /// A zero-filled matrix; group_size 0 means per-channel (one group per row).
  quantized_matrix(std::size_t rows, std::size_t cols, std::size_t group_size)
      : shape_{rows, cols, group_size == 0 ? cols : group_size} {
    check_quantized_shape(shape_);
    codes_ = aligned_buffer<uint8_t>(rows * packed_bytes(cols, bits));
    scales_ = aligned_buffer<scale_type>(shape_.group_count());
    if (Scheme::has_zero) zeros_ = aligned_buffer<uint8_t>(shape_.group_count());
  }

  std::size_t rows() const noexcept { return shape_.rows; }
  std::size_t cols() const noexcept { return shape_.cols; }
  std::size_t group_size() const noexcept { return shape_.group_size; }
  std::size_t groups_per_row() const noexcept { return shape_.groups_per_row(); }
  std::size_t row_bytes() const noexcept { return packed_bytes(shape_.cols, bits); }
  const quantized_shape& shape() const noexcept { return shape_; }

  uint8_t* codes() noexcept { return codes_.data(); }
  const uint8_t* codes() const noexcept { return codes_.data(); }
  scale_type* scales() noexcept { return scales_.data(); }
  const scale_type* scales() const noexcept { return scales_.data(); }
  uint8_t* zeros() noexcept { return zeros_.data(); }
  const uint8_t* zeros() const noexcept { return zeros_.data(); }

  uint8_t code(std::size_t r, std::size_t k) const noexcept { return view().code(r, k); }
  void set_code(std::size_t r, std::size_t k, uint8_t c) noexcept {
    set_packed_code(codes_.data() + r * row_bytes(), k, bits, c);
  }
  scale_type& scale(std::size_t r, std::size_t group) noexcept { return scales_[r * groups_per_row() + group]; }
  const scale_type& scale(std::size_t r, std::size_t group) const noexcept { return scales_[r * groups_per_row() + group]; }
  uint8_t& zero(std::size_t r, std::size_t group) noexcept { return zeros_[r * groups_per_row() + group]; }
  uint8_t zero(std::size_t r, std::size_t group) const noexcept { return zeros_[r * groups_per_row() + group]; }

  quantized_view<Scheme> view() const noexcept {
    return quantized_view<Scheme>{codes_.data(), scales_.data(), Scheme::has_zero ? zeros_.data() : nullptr, shape_};
  }
  operator quantized_view<Scheme>() const noexcept { return view(); }
  std::size_t storage_bytes() const noexcept { return view().storage_bytes(); }

 private:
  quantized_shape shape_{};
  aligned_buffer<uint8_t> codes_;
  aligned_buffer<scale_type> scales_;
  aligned_buffer<uint8_t> zeros_;
};

}  // namespace lowbit
