/// \file
/// \brief Block-sparse rows (BSR): the non-zero blocks of a matrix, BR x BC each, in any lowbit
/// scheme, addressed by block row pointers and block column indices (torch.sparse_bsr, cuSPARSE).
///
/// Reference layout (what bsr_matrix is built from and exports), for an N x K matrix with
/// BR | N and BC | K:
///  - row_ptr: N / BR + 1 entries, row_ptr[0] = 0, non-decreasing; block row b holds blocks
///    [row_ptr[b], row_ptr[b + 1]).
///  - col_idx: one entry per block, its block column (0 .. K / BC - 1), strictly increasing
///    within a block row.
///  - values: a quantized matrix of (blocks x BR) rows x BC columns, block i's rows at
///    i BR .. i BR + BR - 1, row-major within the block; group_size must divide BC.
/// Kernel layout, when BR is a multiple of 16 and the group size a multiple of the panel lane
/// (8 codes for 4-bit formats, 4 otherwise): each block row's blocks side by side as one panel
/// matrix of BR x (blocks x BC) (layout/panel.hpp), which the dense kernels run on with x
/// columns mapped block by block. Other shapes keep the reference layout and run a scalar kernel.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../layout/panel.hpp"
#include "../layout/quantized_matrix.hpp"

namespace lowbit {

/// The block structure of a BSR matrix, validated on construction.
struct bsr_structure {
  std::size_t rows = 0, cols = 0;               ///< N, K
  std::size_t block_rows = 0, block_cols = 0;   ///< BR, BC
  std::vector<uint32_t> row_ptr;                ///< N / BR + 1
  std::vector<uint32_t> col_idx;                ///< one per block

  bsr_structure() = default;
  /// Copies and checks the arrays; anything inconsistent is a lowbit::error naming the entry.
  bsr_structure(std::size_t rows_, std::size_t cols_, std::size_t block_rows_, std::size_t block_cols_,
                const uint32_t* row_ptr_, const uint32_t* col_idx_)
      : rows(rows_), cols(cols_), block_rows(block_rows_), block_cols(block_cols_) {
    LOWBIT_CHECK(rows > 0 && cols > 0, "bsr: " << rows << " x " << cols << " is empty");
    LOWBIT_CHECK(block_rows > 0 && block_cols > 0 && rows % block_rows == 0 && cols % block_cols == 0,
                 "bsr: blocks of " << block_rows << " x " << block_cols << " must tile " << rows << " x " << cols);
    LOWBIT_CHECK(row_ptr_ != nullptr, "bsr: row_ptr is null");
    const std::size_t brows = rows / block_rows, bcols = cols / block_cols;
    LOWBIT_CHECK(row_ptr_[0] == 0, "bsr: row_ptr[0] = " << row_ptr_[0] << " must be 0");
    for (std::size_t b = 0; b < brows; ++b)
      LOWBIT_CHECK(row_ptr_[b + 1] >= row_ptr_[b] && row_ptr_[b + 1] - row_ptr_[b] <= bcols,
                   "bsr: block row " << b << " spans row_ptr " << row_ptr_[b] << " .. " << row_ptr_[b + 1]
                                     << " (must be non-decreasing, at most " << bcols << " blocks)");
    row_ptr.assign(row_ptr_, row_ptr_ + brows + 1);
    LOWBIT_CHECK(blocks() == 0 || col_idx_ != nullptr, "bsr: col_idx is null");
    if (blocks()) col_idx.assign(col_idx_, col_idx_ + blocks());
    for (std::size_t b = 0; b < brows; ++b)
      for (std::size_t i = row_ptr[b]; i < row_ptr[b + 1]; ++i) {
        LOWBIT_CHECK(col_idx[i] < bcols, "bsr: block " << i << " (block row " << b << ") has column " << col_idx[i]
                                                       << ", past the " << bcols << " block columns");
        LOWBIT_CHECK(i == row_ptr[b] || col_idx[i] > col_idx[i - 1],
                     "bsr: block row " << b << ": block columns must be strictly increasing (block " << i
                                       << " has " << col_idx[i] << " after " << col_idx[i - 1] << ")");
      }
  }

  std::size_t block_row_count() const noexcept { return row_ptr.empty() ? 0 : row_ptr.size() - 1; }
  std::size_t blocks() const noexcept { return row_ptr.empty() ? 0 : row_ptr.back(); }
  /// Fraction of the blocks that are stored.
  double density() const noexcept {
    return double(blocks()) / (double(rows / block_rows) * double(cols / block_cols));
  }
};

template <class Scheme>
class bsr_matrix {
 public:
  using scheme_type = Scheme;
  static constexpr std::size_t per_lane = panel_matrix<Scheme>::lane_elements;

  bsr_matrix() = default;

  /// Builds from the reference layout (file comment): the structure, and the blocks' values as
  /// (blocks x BR) x BC quantized rows. Checks everything a kernel relies on.
  bsr_matrix(bsr_structure structure, const quantized_view<Scheme>& values) : structure_(std::move(structure)) {
    const std::size_t br = structure_.block_rows, bc = structure_.block_cols;
    LOWBIT_CHECK(structure_.block_row_count() > 0, "bsr: the structure is empty (default-constructed)");
    if (structure_.blocks() > 0) {
      values.validate_contents();  // finite scales, valid zero points: the values may come from a file
      LOWBIT_CHECK(values.rows() == structure_.blocks() * br && values.cols() == bc,
                   "bsr: " << structure_.blocks() << " blocks of " << br << " x " << bc << " need values of "
                           << structure_.blocks() * br << " x " << bc << ", got " << values.rows() << " x "
                           << values.cols());
      LOWBIT_CHECK(bc % values.group_size() == 0,
                   "bsr: group_size=" << values.group_size() << " must divide the block width " << bc);
      group_size_ = values.group_size();
    } else {
      group_size_ = bc;
    }
    fast_ = br % 16 == 0 && group_size_ % per_lane == 0;
    if (!fast_) {
      if (structure_.blocks() > 0) reference_ = copy_of(values);
      return;
    }
    // One panel matrix per block row: its blocks side by side.
    rows_.resize(structure_.block_row_count());
    for (std::size_t b = 0; b < rows_.size(); ++b) {
      const std::size_t first = structure_.row_ptr[b], count = structure_.row_ptr[b + 1] - first;
      if (count == 0) continue;
      quantized_matrix<Scheme> side(br, count * bc, group_size_);
      for (std::size_t r = 0; r < br; ++r)
        for (std::size_t i = 0; i < count; ++i) {
          const std::size_t source = (first + i) * br + r;
          for (std::size_t k = 0; k < bc; ++k) side.set_code(r, i * bc + k, values.code(source, k));
          for (std::size_t g = 0; g < bc / group_size_; ++g) {
            side.scale(r, i * bc / group_size_ + g) = values.row_scales(source)[g];
            if (Scheme::has_zero) side.zero(r, i * bc / group_size_ + g) = values.row_zeros(source)[g];
          }
        }
      rows_[b] = pack_panels(side.view());
    }
  }

  std::size_t rows() const noexcept { return structure_.rows; }
  std::size_t cols() const noexcept { return structure_.cols; }
  std::size_t group_size() const noexcept { return group_size_; }
  const bsr_structure& structure() const noexcept { return structure_; }
  /// True when the SIMD kernels run on it (BR a multiple of 16, group size of whole lanes).
  bool vectorized() const noexcept { return fast_; }
  /// Block row b's blocks side by side (vectorized() only; empty for a block row without blocks).
  const panel_matrix<Scheme>& block_row(std::size_t b) const noexcept { return rows_[b]; }

  /// The blocks' values in the reference layout, bit for bit.
  quantized_matrix<Scheme> values() const {
    if (!fast_) return copy_of(reference_.view());
    const std::size_t br = structure_.block_rows, bc = structure_.block_cols;
    quantized_matrix<Scheme> out(structure_.blocks() * br, bc, group_size_);
    for (std::size_t b = 0; b < rows_.size(); ++b) {
      if (structure_.row_ptr[b + 1] == structure_.row_ptr[b]) continue;
      const quantized_matrix<Scheme> side = unpack_panels(rows_[b]);
      const std::size_t first = structure_.row_ptr[b], count = structure_.row_ptr[b + 1] - first;
      for (std::size_t r = 0; r < br; ++r)
        for (std::size_t i = 0; i < count; ++i) {
          const std::size_t target = (first + i) * br + r;
          for (std::size_t k = 0; k < bc; ++k) out.set_code(target, k, side.code(r, i * bc + k));
          for (std::size_t g = 0; g < bc / group_size_; ++g) {
            out.scale(target, g) = side.scale(r, i * bc / group_size_ + g);
            if (Scheme::has_zero) out.zero(target, g) = side.zero(r, i * bc / group_size_ + g);
          }
        }
    }
    return out;
  }
  /// The reference layout's values (not vectorized() only).
  const quantized_matrix<Scheme>& reference_values() const noexcept { return reference_; }

  /// Bytes a kernel reads: values, scales, zero points, row pointers and column indices.
  std::size_t storage_bytes() const noexcept {
    std::size_t bytes = (structure_.row_ptr.size() + structure_.col_idx.size()) * sizeof(uint32_t);
    if (!fast_) return bytes + reference_.storage_bytes();
    for (const auto& row : rows_) bytes += row.storage_bytes();
    return bytes;
  }

 private:
  static quantized_matrix<Scheme> copy_of(const quantized_view<Scheme>& v) {
    quantized_matrix<Scheme> out(v.rows(), v.cols(), v.group_size());
    std::copy(v.codes, v.codes + v.rows() * v.row_bytes(), out.codes());
    std::copy(v.scales, v.scales + v.shape.group_count(), out.scales());
    if (Scheme::has_zero) std::copy(v.zeros, v.zeros + v.shape.group_count(), out.zeros());
    return out;
  }

  bsr_structure structure_;
  std::size_t group_size_ = 0;
  bool fast_ = false;
  std::vector<panel_matrix<Scheme>> rows_;
  quantized_matrix<Scheme> reference_;
};

}  // namespace lowbit
