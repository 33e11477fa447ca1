/// \file
/// \brief 2:4 structured-sparse weights: in every group of 4 consecutive columns of a row at most
/// 2 are non-zero; the 2 kept values are stored compactly in any lowbit scheme, their positions
/// as 2-bit indices.
///
/// Reference layout (what sparse24_matrix is built from and exports):
///  - kept values: a quantized matrix of rows x kept_cols, kept_cols = 2 * ceil(cols / 4); group
///    g of 4 columns keeps values 2g (the lower position) and 2g + 1. Quantization groups count
///    kept values (group_size 64 = 128 original columns).
///  - positions: one nibble per group of 4, row-major [rows x ceil(groups / 2)] bytes, group 2j
///    in the low nibble of byte j; a nibble holds the first kept position (0..3) in bits 0-1 and
///    the second in bits 2-3, and the first must be lower than the second. Positions past `cols`
///    (in the last group when cols % 4 != 0) are allowed and multiply zeros.
/// Kernel layout: the kept values as a panel_matrix (16-row panels, layout/panel.hpp) and the
/// positions interleaved the same way: per panel and chunk of `per_lane` kept values, row i's
/// 2 * per_lane bits (per_lane / 4 bytes) at metadata(p, c) + i * per_lane / 4, kept value j of the
/// lane in bits 2j, 2j + 1 — the position stream of the row, cut into chunks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "../core/aligned.hpp"
#include "../core/error.hpp"
#include "../layout/panel.hpp"
#include "../layout/quantized_matrix.hpp"

namespace lowbit {

/// The positions of a 2:4 pattern in the reference layout (one nibble per group of 4).
struct sparse24_positions {
  std::size_t rows = 0;
  std::size_t cols = 0;            ///< original columns K
  std::vector<uint8_t> nibbles;    ///< rows x bytes_per_row()

  sparse24_positions() = default;
  sparse24_positions(std::size_t rows_, std::size_t cols_)
      : rows(rows_), cols(cols_), nibbles(rows_ * bytes_per_row_of(cols_), uint8_t(0x44)) {}  // (0, 1) everywhere

  static std::size_t groups_of(std::size_t cols) noexcept { return (cols + 3) / 4; }
  static std::size_t bytes_per_row_of(std::size_t cols) noexcept { return (groups_of(cols) + 1) / 2; }
  std::size_t groups() const noexcept { return groups_of(cols); }
  std::size_t bytes_per_row() const noexcept { return bytes_per_row_of(cols); }

  /// The nibble of group g of row r.
  unsigned get(std::size_t r, std::size_t g) const noexcept {
    return (nibbles[r * bytes_per_row() + g / 2] >> (g % 2 * 4)) & 15u;
  }
  /// Keeps positions a < b of group g of row r.
  void set(std::size_t r, std::size_t g, unsigned a, unsigned b) noexcept {
    uint8_t& byte = nibbles[r * bytes_per_row() + g / 2];
    const unsigned shift = g % 2 * 4;
    byte = static_cast<uint8_t>((byte & ~(15u << shift)) | ((a | b << 2) << shift));
  }
};

namespace detail {
/// Throws unless every group's nibble names two distinct positions in order.
inline void check_sparse24_nibbles(const uint8_t* nibbles, std::size_t rows, std::size_t cols) {
  const std::size_t groups = sparse24_positions::groups_of(cols), bytes = sparse24_positions::bytes_per_row_of(cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < groups; ++g) {
      const unsigned nibble = (nibbles[r * bytes + g / 2] >> (g % 2 * 4)) & 15u;
      LOWBIT_CHECK((nibble & 3u) < (nibble >> 2), "sparse24: row " << r << ", group " << g << " (columns " << 4 * g
                                                   << ".." << 4 * g + 3 << ") has positions " << (nibble & 3u)
                                                   << " and " << (nibble >> 2)
                                                   << ": the two kept positions must be distinct and ordered");
    }
}
}  // namespace detail

template <class Scheme>
class sparse24_matrix {
 public:
  using scheme_type = Scheme;
  static constexpr std::size_t per_lane = panel_matrix<Scheme>::lane_elements;  ///< kept values per 32-bit lane
  static constexpr std::size_t metadata_row_bytes = per_lane / 4;                ///< 2 bits per kept value
  static constexpr std::size_t metadata_chunk_bytes = 16 * metadata_row_bytes;

  sparse24_matrix() = default;

  /// Builds from the reference layout (see the file comment), checking every position and the
  /// kept values' contents: a bad nibble, a non-finite scale, an out-of-range zero point, a shape
  /// that does not fit or a null pointer is a lowbit::error.
  sparse24_matrix(const quantized_view<Scheme>& kept, const uint8_t* positions, std::size_t cols) {
    kept.validate_contents();  // finite scales, valid zero points: the values may come from a file
    LOWBIT_CHECK(positions != nullptr, "sparse24: positions is null");
    LOWBIT_CHECK(cols > 0 && kept.cols() == 2 * sparse24_positions::groups_of(cols),
                 "sparse24: " << cols << " columns need " << 2 * sparse24_positions::groups_of(cols)
                              << " kept values per row, the values have " << kept.cols());
    detail::check_sparse24_nibbles(positions, kept.rows(), cols);
    cols_ = cols;
    values_ = pack_panels(kept);
    metadata_ = aligned_buffer<uint8_t>(values_.panels() * values_.chunks() * metadata_chunk_bytes);
    std::memset(metadata_.data(), 0, metadata_.size());
    const std::size_t groups = sparse24_positions::groups_of(cols), bytes = sparse24_positions::bytes_per_row_of(cols);
    for (std::size_t r = 0; r < kept.rows(); ++r)
      for (std::size_t g = 0; g < groups; ++g) {
        const unsigned nibble = (positions[r * bytes + g / 2] >> (g % 2 * 4)) & 15u;
        const std::size_t j = 2 * g % per_lane;  // first kept value of the group within its lane
        uint8_t* row = metadata(r / 16, 2 * g / per_lane) + r % 16 * metadata_row_bytes;
        row[j / 4] = static_cast<uint8_t>(row[j / 4] | nibble << (j % 4 * 2));
      }
  }

  std::size_t rows() const noexcept { return values_.shape().rows; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t kept_cols() const noexcept { return values_.shape().cols; }
  std::size_t group_size() const noexcept { return values_.shape().group_size; }
  const panel_matrix<Scheme>& values() const noexcept { return values_; }
  const uint8_t* metadata(std::size_t p, std::size_t c) const noexcept {
    return metadata_.data() + (p * values_.chunks() + c) * metadata_chunk_bytes;
  }
  /// Position (0..3, within its group of 4) of kept value j of row r.
  unsigned position(std::size_t r, std::size_t j) const noexcept {
    const uint8_t* row = metadata(r / 16, j / per_lane) + r % 16 * metadata_row_bytes;
    const std::size_t within = j % per_lane;
    return (row[within / 4] >> (within % 4 * 2)) & 3u;
  }
  /// Bytes a kernel reads: values, scales, zero points and positions.
  std::size_t storage_bytes() const noexcept { return values_.storage_bytes() + metadata_.size(); }

  /// The reference layout back, bit for bit: kept values and positions.
  quantized_matrix<Scheme> kept_values() const { return unpack_panels(values_); }
  sparse24_positions positions() const {
    sparse24_positions out(rows(), cols_);
    for (std::size_t r = 0; r < rows(); ++r)
      for (std::size_t g = 0; g < out.groups(); ++g) out.set(r, g, position(r, 2 * g), position(r, 2 * g + 1));
    return out;
  }

 private:
  std::size_t cols_ = 0;
  panel_matrix<Scheme> values_;
  aligned_buffer<uint8_t> metadata_;

  uint8_t* metadata(std::size_t p, std::size_t c) noexcept {
    return metadata_.data() + (p * values_.chunks() + c) * metadata_chunk_bytes;
  }
};

}  // namespace lowbit
