/// \file
/// \brief 2:4 matrices whose kept values are plain fp32 or bf16, unquantized:
/// sparse24_matrix<float> and sparse24_matrix<bf16> (the two baselines of the quantized kinds,
/// and what PyTorch's semi-structured fp16/bf16 tensors import to without requantization).
///
/// Reference layout: as for the quantized kinds (sparse24_matrix.hpp), the kept values as a
/// rows x kept_cols matrix of T and the positions one nibble per group of 4.
/// Kernel layout: 16-row panels in chunks of 4 kept values (2 groups, 8 columns of x):
///  - values: fp32 [4][16] (kept value j of the 16 rows contiguous, 64 bytes); bf16 [2][16]
///    32-bit words, word (p, r) holding value 2p in its low half and 2p + 1 in its high half;
///  - positions: 16 bytes, row r's byte = group 2c's nibble | group 2c + 1's nibble << 4 (the
///    quantized kinds' metadata with one byte per row and chunk).
/// Rows past N and the odd group past the last are zeros at positions (0, 1).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../core/aligned.hpp"
#include "../core/error.hpp"
#include "../core/half.hpp"
#include "sparse24_matrix.hpp"

namespace lowbit {

template <class T>
struct is_plain_value : std::integral_constant<bool, std::is_same<T, float>::value || std::is_same<T, bf16>::value> {};

namespace detail {

inline float plain_to_float(float v) noexcept { return v; }
inline float plain_to_float(bf16 v) noexcept { return v.to_float(); }

template <class T>
class sparse24_plain {
  static_assert(is_plain_value<T>::value, "plain kept values are float or bf16");

 public:
  using value_type = T;
  static constexpr std::size_t chunk_values = 4;  ///< kept values per row and chunk
  static constexpr std::size_t chunk_elements = 16 * chunk_values;

  sparse24_plain() = default;

  /// From the reference layout: kept (rows x 2 ceil(cols / 4), row stride ld) and positions. A
  /// bad nibble, a non-finite value, a null pointer or an empty shape is a lowbit::error.
  sparse24_plain(const T* kept, std::size_t rows, std::size_t ld, const uint8_t* positions, std::size_t cols)
      : rows_(rows), cols_(cols) {
    LOWBIT_CHECK(kept != nullptr, "sparse24: kept values are null");
    LOWBIT_CHECK(positions != nullptr, "sparse24: positions is null");
    LOWBIT_CHECK(rows > 0 && cols > 0, "sparse24: rows=" << rows << " and cols=" << cols << " must be positive");
    const std::size_t kept_cols = this->kept_cols();
    LOWBIT_CHECK(ld >= kept_cols, "sparse24: leading dimension " << ld << " of the kept values is smaller than their "
                                                                 << kept_cols << " columns");
    detail::check_sparse24_nibbles(positions, rows, cols);
    chunks_ = (kept_cols + chunk_values - 1) / chunk_values;
    values_ = aligned_buffer<T>(panels() * chunks_ * chunk_elements);
    std::memset(static_cast<void*>(values_.data()), 0, values_.size() * sizeof(T));
    metadata_ = aligned_buffer<uint8_t>(panels() * chunks_ * 16);
    std::memset(metadata_.data(), 0x44, metadata_.size());  // (0, 1) in both nibbles
    const std::size_t bytes = sparse24_positions::bytes_per_row_of(cols);  // == chunks_
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t j = 0; j < kept_cols; ++j) {
        const T v = kept[r * ld + j];
        LOWBIT_CHECK(std::isfinite(plain_to_float(v)), "sparse24: kept value (" << r << ", " << j << ") = "
                                                                                 << plain_to_float(v) << " is not finite");
        values_[slot(r, j)] = v;
      }
      for (std::size_t c = 0; c < chunks_; ++c) {  // groups 2c, 2c + 1: the nibbles of one byte
        const uint8_t byte = positions[r * bytes + c];
        metadata_[(r / 16 * chunks_ + c) * 16 + r % 16] = 2 * c + 1 < groups() ? byte : uint8_t((byte & 0x0f) | 0x40);
      }
    }
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t groups() const noexcept { return sparse24_positions::groups_of(cols_); }
  std::size_t kept_cols() const noexcept { return 2 * groups(); }
  std::size_t panels() const noexcept { return (rows_ + 15) / 16; }
  std::size_t chunks() const noexcept { return chunks_; }
  const T* chunk(std::size_t p, std::size_t c) const noexcept { return values_.data() + (p * chunks_ + c) * chunk_elements; }
  const uint8_t* metadata(std::size_t p, std::size_t c) const noexcept { return metadata_.data() + (p * chunks_ + c) * 16; }

  /// Kept value j of row r, and its position (0..3) within group j / 2.
  T value(std::size_t r, std::size_t j) const noexcept { return values_[slot(r, j)]; }
  unsigned position(std::size_t r, std::size_t j) const noexcept {
    return (metadata(r / 16, j / chunk_values)[r % 16] >> (j % chunk_values * 2)) & 3u;
  }
  /// Bytes a kernel reads: values and positions (padding included).
  std::size_t storage_bytes() const noexcept { return values_.size() * sizeof(T) + metadata_.size(); }

  /// The reference layout back, bit for bit: kept values (rows x kept_cols) and positions.
  std::vector<T> kept_values() const {
    std::vector<T> out(rows_ * kept_cols());
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t j = 0; j < kept_cols(); ++j) out[r * kept_cols() + j] = value(r, j);
    return out;
  }
  sparse24_positions positions() const {
    sparse24_positions out(rows_, cols_);
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t g = 0; g < out.groups(); ++g) out.set(r, g, position(r, 2 * g), position(r, 2 * g + 1));
    return out;
  }

 private:
  std::size_t rows_ = 0, cols_ = 0, chunks_ = 0;
  aligned_buffer<T> values_;
  aligned_buffer<uint8_t> metadata_;

  /// Index of kept value j of row r in values_ (see the file comment).
  std::size_t slot(std::size_t r, std::size_t j) const noexcept {
    const std::size_t base = (r / 16 * chunks_ + j / chunk_values) * chunk_elements, within = j % chunk_values;
    if (std::is_same<T, float>::value) return base + within * 16 + r % 16;
    return base + (within / 2 * 16 + r % 16) * 2 + within % 2;
  }
};

}  // namespace detail

/// 2:4 with fp32 kept values: 2 + 1/8 bytes per original weight (dense fp32: 4).
template <>
class sparse24_matrix<float> : public detail::sparse24_plain<float> {
 public:
  using scheme_type = float;
  using detail::sparse24_plain<float>::sparse24_plain;
  sparse24_matrix() = default;
};

/// 2:4 with bf16 kept values: 1 + 1/8 bytes per original weight.
template <>
class sparse24_matrix<bf16> : public detail::sparse24_plain<bf16> {
 public:
  using scheme_type = bf16;
  using detail::sparse24_plain<bf16>::sparse24_plain;
  sparse24_matrix() = default;
};

}  // namespace lowbit
