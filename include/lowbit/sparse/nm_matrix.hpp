/// \file
/// \brief N:M structured-sparse weights for M in {4, 8, 16} (4:8, 1:4, 2:8, 8:16, 2:4, ...): in
/// every group of M consecutive columns of a row exactly N are kept (N a power of two below M);
/// the kept values are stored compactly in any lowbit scheme (or plain fp32 / bf16), their places
/// as log2(M)-bit positions.
///
/// Reference layout (what nm_matrix is built from and exports):
///  - kept values: rows x kept_cols, kept_cols = N * ceil(cols / M); group g keeps values
///    N g .. N g + N - 1 in column order. Quantization groups count kept values.
///  - mask (nm_pattern): 1 bit per original weight, row-major, ceil(groups * M / 8) bytes a row,
///    column k of a row at bit k % 8 of byte k / 8. Every group of M must hold exactly N set bits;
///    in the last group (cols % M != 0) bits past `cols` may be set: they multiply zeros. A group
///    with fewer non-zeros keeps zeros (find_nm_pattern and nm_pattern_of fill it with its lowest
///    free slots), so "at most N" matrices are stored too.
/// Kernel layout: the kept values in 16-row panels, chunks of `per_lane` kept values (the
/// quantized kinds: panel_matrix, layout/panel.hpp; plain fp32 / bf16: 8 values a chunk); the
/// positions interleaved the same way: per panel and chunk, row i's per_lane * log2(M) bits in
/// row_bytes bytes at metadata(p, c) + i * row_bytes, kept value j of the chunk in bits
/// [j log2(M), (j + 1) log2(M)). Each lane then picks its x column with one permute of the
/// group's M columns (simd/nm_select.hpp). (A mask in the kernel layout would need a
/// select-the-j-th-set-bit per lane; positions cost log2(M) N / M bits per weight instead of 1:
/// 1.5 for 4:8, 1 for 2:4, 0.5 for 1:4, 0.75 for 2:8, 2 for 8:16.)
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
#include "../layout/panel.hpp"
#include "../layout/quantized_matrix.hpp"
#include "sparse24_plain.hpp"

namespace lowbit {

/// An N:M pattern in the reference layout: one bit per original weight.
struct nm_pattern {
  std::size_t rows = 0, cols = 0;
  std::size_t n = 0, m = 0;
  std::vector<uint8_t> bits;  ///< rows x bytes_per_row()

  nm_pattern() = default;
  nm_pattern(std::size_t rows_, std::size_t cols_, std::size_t n_, std::size_t m_)
      : rows(rows_), cols(cols_), n(n_), m(m_), bits(rows_ * bytes_per_row_of(cols_, m_), uint8_t(0)) {}

  static std::size_t groups_of(std::size_t cols, std::size_t m) noexcept { return m ? (cols + m - 1) / m : 0; }
  static std::size_t bytes_per_row_of(std::size_t cols, std::size_t m) noexcept { return (groups_of(cols, m) * m + 7) / 8; }
  std::size_t groups() const noexcept { return groups_of(cols, m); }
  std::size_t bytes_per_row() const noexcept { return bytes_per_row_of(cols, m); }
  std::size_t kept_cols() const noexcept { return n * groups(); }

  /// Whether column k of row r is kept (k < groups() * m: past cols, the padding of the last group).
  bool kept(std::size_t r, std::size_t k) const noexcept { return (bits[r * bytes_per_row() + k / 8] >> (k % 8)) & 1u; }
  void set(std::size_t r, std::size_t k, bool keep) noexcept {
    uint8_t& byte = bits[r * bytes_per_row() + k / 8];
    byte = static_cast<uint8_t>(keep ? byte | (1u << (k % 8)) : byte & ~(1u << (k % 8)));
  }
};

namespace detail {

/// log2(m) for a power of two.
constexpr unsigned nm_log2(std::size_t v) noexcept {
  unsigned b = 0;
  while ((std::size_t(1) << b) < v) ++b;
  return b;
}

/// Throws unless M is 4, 8 or 16 and N a power of two below M.
inline void check_nm_shape(const char* who, std::size_t n, std::size_t m) {
  LOWBIT_CHECK(m == 4 || m == 8 || m == 16, who << ": M=" << m << " must be 4, 8 or 16");
  LOWBIT_CHECK(n >= 1 && n < m && (n & (n - 1)) == 0,
               who << ": N=" << n << " must be a power of two below M=" << m << " (1, 2, ..., " << m / 2 << ")");
}

/// Throws unless every group of the mask bits holds exactly n set bits.
inline void check_nm_bits(const char* who, const uint8_t* bits, std::size_t rows, std::size_t cols, std::size_t n,
                          std::size_t m) {
  const std::size_t groups = nm_pattern::groups_of(cols, m), bytes = nm_pattern::bytes_per_row_of(cols, m);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < groups; ++g) {
      std::size_t count = 0;
      for (std::size_t k = g * m; k < (g + 1) * m; ++k) count += (bits[r * bytes + k / 8] >> (k % 8)) & 1u;
      LOWBIT_CHECK(count == n, who << ": row " << r << ", group " << g << " (columns " << g * m << ".." << (g + 1) * m - 1
                                   << ") keeps " << count << " weights; " << n << ":" << m << " keeps exactly " << n);
    }
}

/// The positions of an N:M matrix in the kernel layout (see the file comment), shared by the
/// quantized and the plain kinds.
class nm_positions {
 public:
  nm_positions() = default;

  /// Checks the shape and the mask (a lowbit::error for a null pointer, a bad N or M, an empty
  /// shape or a group without exactly n bits) and packs the positions, `per_lane` kept values a chunk.
  nm_positions(const uint8_t* bits, std::size_t rows, std::size_t cols, std::size_t n, std::size_t m,
               std::size_t per_lane)
      : rows_(rows), cols_(cols), n_(n), m_(m), per_lane_(per_lane) {
    check_nm_shape("nm_matrix", n, m);
    LOWBIT_CHECK(bits != nullptr, "nm_matrix: the mask is null");
    LOWBIT_CHECK(rows > 0 && cols > 0, "nm_matrix: rows=" << rows << " and cols=" << cols << " must be positive");
    check_nm_bits("nm_matrix", bits, rows, cols, n, m);
    position_bits_ = nm_log2(m);
    row_bytes_ = (per_lane * position_bits_ + 7) / 8;
    chunks_ = (kept_cols() + per_lane - 1) / per_lane;
    // 64 bytes of slack: the SIMD loader of 3-byte rows reads 16 bytes from the last row's start.
    metadata_ = aligned_buffer<uint8_t>(panels() * chunks_ * 16 * row_bytes_ + 64);
    std::memset(metadata_.data(), 0, metadata_.size());
    const std::size_t bytes = nm_pattern::bytes_per_row_of(cols, m);
    for (std::size_t r = 0; r < rows; ++r) {
      std::size_t j = 0;
      for (std::size_t k = 0; k < groups() * m; ++k)
        if ((bits[r * bytes + k / 8] >> (k % 8)) & 1u) {
          const std::size_t bit = j % per_lane * position_bits_;
          uint8_t* row = metadata_.data() + ((r / 16 * chunks_ + j / per_lane) * 16 + r % 16) * row_bytes_;
          const unsigned value = static_cast<unsigned>(k % m) << (bit % 8);
          row[bit / 8] = static_cast<uint8_t>(row[bit / 8] | value);
          if (value > 255u) row[bit / 8 + 1] = static_cast<uint8_t>(row[bit / 8 + 1] | (value >> 8));
          ++j;
        }
    }
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t n() const noexcept { return n_; }
  std::size_t m() const noexcept { return m_; }
  std::size_t groups() const noexcept { return nm_pattern::groups_of(cols_, m_); }
  std::size_t kept_cols() const noexcept { return n_ * groups(); }
  std::size_t panels() const noexcept { return (rows_ + 15) / 16; }
  std::size_t chunks() const noexcept { return chunks_; }
  unsigned position_bits() const noexcept { return position_bits_; }
  std::size_t row_bytes() const noexcept { return row_bytes_; }
  const uint8_t* metadata(std::size_t p, std::size_t c) const noexcept {
    return metadata_.data() + (p * chunks_ + c) * 16 * row_bytes_;
  }
  std::size_t metadata_bytes() const noexcept { return metadata_.size() - 64; }

  /// Position (0..m-1, within its group) of kept value j of row r.
  unsigned position(std::size_t r, std::size_t j) const noexcept {
    const uint8_t* row = metadata(r / 16, j / per_lane_) + r % 16 * row_bytes_;
    const std::size_t bit = j % per_lane_ * position_bits_;
    unsigned word = row[bit / 8];
    if (bit / 8 + 1 < row_bytes_) word |= static_cast<unsigned>(row[bit / 8 + 1]) << 8;
    return (word >> (bit % 8)) & static_cast<unsigned>(m_ - 1);
  }
  /// Original column of kept value j of row r (may be past cols in the last group).
  std::size_t column(std::size_t r, std::size_t j) const noexcept { return j / n_ * m_ + position(r, j); }

  /// The reference mask back, bit for bit.
  nm_pattern pattern() const {
    nm_pattern out(rows_, cols_, n_, m_);
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t j = 0; j < kept_cols(); ++j) out.set(r, column(r, j), true);
    return out;
  }

 private:
  std::size_t rows_ = 0, cols_ = 0, n_ = 0, m_ = 0, per_lane_ = 0, row_bytes_ = 0, chunks_ = 0;
  unsigned position_bits_ = 0;
  aligned_buffer<uint8_t> metadata_;
};

}  // namespace detail

/// N:M weights with quantized kept values: N/M x bits + log2(M) N / M bits per original weight,
/// plus the scales of the kept values (4:8 int4, group 64 fp16 scales: 2 + 1.5 + 0.125 bits).
template <class Scheme>
class nm_matrix : public detail::nm_positions {
 public:
  using scheme_type = Scheme;
  static constexpr std::size_t per_lane = panel_matrix<Scheme>::lane_elements;  ///< kept values per chunk

  nm_matrix() = default;

  /// Builds from the reference layout (see the file comment): kept values rows x n ceil(cols / m)
  /// and the mask bits. A bad mask, shape, N or M, or a null pointer is a lowbit::error.
  nm_matrix(const quantized_view<Scheme>& kept, const uint8_t* mask_bits, std::size_t cols, std::size_t n, std::size_t m)
      : detail::nm_positions(checked(kept, mask_bits, cols, n, m), kept.rows(), cols, n, m, per_lane),
        values_(pack_panels(kept)) {}

  std::size_t group_size() const noexcept { return values_.shape().group_size; }
  const panel_matrix<Scheme>& values() const noexcept { return values_; }
  /// Bytes a kernel reads: values, scales, zero points and positions.
  std::size_t storage_bytes() const noexcept { return values_.storage_bytes() + metadata_bytes(); }
  /// The reference layout's kept values back, bit for bit.
  quantized_matrix<Scheme> kept_values() const { return unpack_panels(values_); }

 private:
  panel_matrix<Scheme> values_;

  static const uint8_t* checked(const quantized_view<Scheme>& kept, const uint8_t* mask_bits, std::size_t cols,
                                std::size_t n, std::size_t m) {
    detail::check_nm_shape("nm_matrix", n, m);
    kept.validate_contents();  // finite scales, valid zero points: the values may come from a file
    LOWBIT_CHECK(cols > 0 && kept.cols() == n * nm_pattern::groups_of(cols, m),
                 "nm_matrix: " << cols << " columns at " << n << ":" << m << " need " << n * nm_pattern::groups_of(cols, m)
                               << " kept values per row, the values have " << kept.cols());
    return mask_bits;
  }
};

namespace detail {

/// N:M with plain fp32 / bf16 kept values. Kernel layout: chunks of 8 kept values of 16 rows,
/// fp32 [8][16] (kept value j of the 16 rows contiguous), bf16 [4][16] 32-bit words, word (p, r)
/// holding value 2p in its low half and 2p + 1 in its high half (sparse24_plain's layout, twice
/// as long). Rows past N and kept values past the last are zeros.
template <class T>
class nm_plain : public nm_positions {
  static_assert(is_plain_value<T>::value, "plain kept values are float or bf16");

 public:
  using value_type = T;
  static constexpr std::size_t per_lane = 8;
  static constexpr std::size_t chunk_elements = 16 * per_lane;

  nm_plain() = default;
  /// From the reference layout: kept (rows x n ceil(cols / m), row stride ld) and the mask bits.
  /// A bad mask, a non-finite value, a null pointer or a bad shape is a lowbit::error.
  nm_plain(const T* kept, std::size_t rows, std::size_t ld, const uint8_t* mask_bits, std::size_t cols, std::size_t n,
           std::size_t m)
      : nm_positions(mask_bits, rows, cols, n, m, per_lane) {
    LOWBIT_CHECK(kept != nullptr, "nm_matrix: kept values are null");
    LOWBIT_CHECK(ld >= kept_cols(), "nm_matrix: leading dimension " << ld << " of the kept values is smaller than their "
                                                                    << kept_cols() << " columns");
    values_ = aligned_buffer<T>(panels() * chunks() * chunk_elements);
    std::memset(static_cast<void*>(values_.data()), 0, values_.size() * sizeof(T));
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < kept_cols(); ++j) {
        const T v = kept[r * ld + j];
        LOWBIT_CHECK(std::isfinite(plain_to_float(v)), "nm_matrix: kept value (" << r << ", " << j << ") = "
                                                                                 << plain_to_float(v) << " is not finite");
        values_[slot(r, j)] = v;
      }
  }

  const T* chunk(std::size_t p, std::size_t c) const noexcept { return values_.data() + (p * chunks() + c) * chunk_elements; }
  /// Kept value j of row r.
  T value(std::size_t r, std::size_t j) const noexcept { return values_[slot(r, j)]; }
  /// Bytes a kernel reads: values and positions (padding included).
  std::size_t storage_bytes() const noexcept { return values_.size() * sizeof(T) + metadata_bytes(); }
  /// The reference layout's kept values back (rows x kept_cols).
  std::vector<T> kept_values() const {
    std::vector<T> out(rows() * kept_cols());
    for (std::size_t r = 0; r < rows(); ++r)
      for (std::size_t j = 0; j < kept_cols(); ++j) out[r * kept_cols() + j] = value(r, j);
    return out;
  }

 private:
  aligned_buffer<T> values_;

  std::size_t slot(std::size_t r, std::size_t j) const noexcept {
    const std::size_t base = (r / 16 * chunks() + j / per_lane) * chunk_elements, within = j % per_lane;
    if (std::is_same<T, float>::value) return base + within * 16 + r % 16;
    return base + (within / 2 * 16 + r % 16) * 2 + within % 2;
  }
};

}  // namespace detail

/// N:M with fp32 kept values: 4 N / M bytes + log2(M) N / M bits per original weight.
template <>
class nm_matrix<float> : public detail::nm_plain<float> {
 public:
  using scheme_type = float;
  using detail::nm_plain<float>::nm_plain;
  nm_matrix() = default;
};

/// N:M with bf16 kept values: 2 N / M bytes + log2(M) N / M bits per original weight.
template <>
class nm_matrix<bf16> : public detail::nm_plain<bf16> {
 public:
  using scheme_type = bf16;
  using detail::nm_plain<bf16>::nm_plain;
  nm_matrix() = default;
};

}  // namespace lowbit
