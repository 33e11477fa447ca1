/// \file
/// \brief PyTorch's semi-structured (2:4) layout, as its CUTLASS backend stores it
/// (torch.sparse.to_sparse_semi_structured, torch/sparse/_semi_structured_conversions.py): a 2:4
/// matrix pruned and packed with lowbit can be handed to a GPU engine, and one made by PyTorch
/// read back.
///
/// PyTorch keeps, for an N x K matrix (N a multiple of 32), the kept values as N x K/2 in the
/// order lowbit keeps them (group by group, lower position first), and a metadata matrix: one
/// nibble per group of 4 (first position in bits 0-1, second in bits 2-3: lowbit's nibble), packed
/// little-endian into 16-bit elements for 16-bit values (fp16, bf16; N x K/16) or 32-bit ones for
/// int8 (N x K/32), then reordered for the tensor cores: rows interleaved in groups of 32 (16 for
/// 32-bit elements), 2 x 2 blocks transposed, columns interleaved in pairs (CUTLASS's
/// ColumnMajorInterleaved<2>). The golden data in tests/data/sparse was made by PyTorch 2.11 and
/// checked against its CUDA tensors (tests/data/gen/gen_torch_sparse24.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../sparse/sparse24_matrix.hpp"
#include "../sparse/sparse24_quantize.hpp"

namespace lowbit {
namespace torch_sparse24 {

/// Checks the shape PyTorch's layout needs for metadata elements of `bits` bits (16 or 32).
inline void check_shape(std::size_t rows, std::size_t cols, unsigned bits) {
  LOWBIT_CHECK(bits == 16 || bits == 32, "torch_sparse24: metadata elements are 16 or 32 bits, not " << bits);
  LOWBIT_CHECK(rows > 0 && rows % 32 == 0, "torch_sparse24: rows=" << rows << " must be a positive multiple of 32");
  LOWBIT_CHECK(cols > 0 && cols % (2 * bits) == 0, "torch_sparse24: cols=" << cols << " must be a positive multiple of "
                                                                           << 2 * bits << " for " << bits
                                                                           << "-bit metadata");
}

/// Where element (r, c) of the logical metadata matrix (rows x cols / (bits / 4 * 4)) goes in
/// the reordered one, as an element index (CUTLASS's reorder_meta with ColumnMajorInterleaved<2>).
inline std::size_t reordered_index(std::size_t r, std::size_t c, std::size_t rows, unsigned bits) noexcept {
  const std::size_t group = bits == 16 ? 32 : 16, interweave = bits == 16 ? 4 : 2;
  std::size_t dr = r / group * group + r % 8 * interweave + r % group / 8, dc = c;
  if (dr % 2 == 0 && dc % 2 == 1) {
    ++dr, --dc;
  } else if (dr % 2 == 1 && dc % 2 == 0) {
    --dr, ++dc;
  }
  return dc / 2 * rows * 2 + dr * 2 + dc % 2;
}

/// The reordered metadata of a pattern, as PyTorch holds it in an int16 (bits 16) or int32
/// (bits 32) tensor: rows x cols / (bits / 4 * 4) elements, little-endian bytes.
inline std::vector<uint8_t> export_metadata(const sparse24_positions& positions, unsigned bits) {
  check_shape(positions.rows, positions.cols, bits);
  const std::size_t per_element = bits / 4, meta_cols = positions.cols / (4 * per_element), bytes = bits / 8;
  std::vector<uint8_t> out(positions.rows * meta_cols * bytes);
  for (std::size_t r = 0; r < positions.rows; ++r)
    for (std::size_t c = 0; c < meta_cols; ++c) {
      uint32_t element = 0;
      for (std::size_t j = 0; j < per_element; ++j) element |= uint32_t(positions.get(r, c * per_element + j)) << (4 * j);
      const std::size_t at = reordered_index(r, c, positions.rows, bits) * bytes;
      for (std::size_t b = 0; b < bytes; ++b) out[at + b] = static_cast<uint8_t>(element >> (8 * b));
    }
  return out;
}

/// The pattern PyTorch's reordered metadata describes (meta: the int16 or int32 tensor's bytes,
/// little-endian). Every nibble is checked: two distinct positions in order, else lowbit::error.
inline sparse24_positions import_metadata(const void* meta, std::size_t rows, std::size_t cols, unsigned bits) {
  check_shape(rows, cols, bits);
  LOWBIT_CHECK(meta != nullptr, "torch_sparse24: metadata is null");
  const uint8_t* bytes_in = static_cast<const uint8_t*>(meta);
  const std::size_t per_element = bits / 4, meta_cols = cols / (4 * per_element), bytes = bits / 8;
  sparse24_positions out(rows, cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < meta_cols; ++c) {
      const std::size_t at = reordered_index(r, c, rows, bits) * bytes;
      uint32_t element = 0;
      for (std::size_t b = 0; b < bytes; ++b) element |= uint32_t(bytes_in[at + b]) << (8 * b);
      for (std::size_t j = 0; j < per_element; ++j) {
        const unsigned nibble = (element >> (4 * j)) & 15u;
        LOWBIT_CHECK((nibble & 3u) < (nibble >> 2), "torch_sparse24: row " << r << ", group " << c * per_element + j
                                                    << " has positions " << (nibble & 3u) << " and " << (nibble >> 2)
                                                    << " (must be distinct and ordered)");
        out.set(r, c * per_element + j, nibble & 3u, nibble >> 2);
      }
    }
  return out;
}

namespace detail {
inline float to_float(float v) noexcept { return v; }
inline float to_float(fp16 v) noexcept { return v.to_float(); }
inline float to_float(bf16 v) noexcept { return v.to_float(); }
inline float to_float(int8_t v) noexcept { return static_cast<float>(v); }
}  // namespace detail

/// A lowbit 2:4 matrix from PyTorch's compressed values (rows x cols / 2 of fp16, bf16, float or
/// int8, row-major) and metadata (32-bit elements for int8 values, 16-bit for the others, as
/// PyTorch pairs them): the values are quantized with quantize<Scheme> (options.group_size counts
/// kept values). Scheme float or bf16: kept as they are (bf16 from bf16 and float from fp16 or
/// float are exact), no requantization.
template <class Scheme, class Value>
sparse24_matrix<Scheme> import_matrix(const Value* values, const void* meta, std::size_t rows, std::size_t cols,
                                      const quant_options& options = {}) {
  constexpr unsigned bits = std::is_same<Value, int8_t>::value ? 32 : 16;
  const sparse24_positions positions = import_metadata(meta, rows, cols, bits);
  LOWBIT_CHECK(values != nullptr, "torch_sparse24: values is null");
  std::vector<float> kept(rows * cols / 2);
  for (std::size_t i = 0; i < kept.size(); ++i) kept[i] = detail::to_float(values[i]);
  if constexpr (is_plain_value<Scheme>::value) {
    const std::vector<Scheme> plain(kept.begin(), kept.end());
    return sparse24_matrix<Scheme>(plain.data(), rows, cols / 2, positions.nibbles.data(), cols);
  } else {
    const quantized_matrix<Scheme> q = quantize<Scheme>(kept.data(), rows, cols / 2, cols / 2, options);
    return sparse24_matrix<Scheme>(q.view(), positions.nibbles.data(), cols);
  }
}

/// PyTorch's int8 values exactly, as int8 codes with one float scale per row (row_scales null:
/// 1), and its 32-bit metadata.
inline sparse24_matrix<scheme<int8, float>> import_int8(const int8_t* values, const void* meta, std::size_t rows,
                                                       std::size_t cols, const float* row_scales = nullptr) {
  const sparse24_positions positions = import_metadata(meta, rows, cols, 32);
  LOWBIT_CHECK(values != nullptr, "torch_sparse24: values is null");
  quantized_matrix<scheme<int8, float>> q(rows, cols / 2, cols / 2);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t j = 0; j < cols / 2; ++j) q.set_code(r, j, static_cast<uint8_t>(values[r * (cols / 2) + j]));
    q.scale(r, 0) = row_scales ? row_scales[r] : 1.0f;
  }
  q.view().validate_contents();
  return sparse24_matrix<scheme<int8, float>>(q.view(), positions.nibbles.data(), cols);
}

/// The compressed values PyTorch expects for w, in Value (fp16, bf16 or float: each kept value
/// dequantized, then rounded to Value; int8: w's int8 codes as they are, its scales left to the
/// caller), rows x cols / 2, row-major.
template <class Value, class Scheme>
std::vector<Value> export_values(const sparse24_matrix<Scheme>& w) {
  std::vector<Value> out(w.rows() * w.kept_cols());
  if constexpr (is_plain_value<Scheme>::value) {
    static_assert(!std::is_same<Value, int8_t>::value, "int8 values come from int8 codes");
    for (std::size_t r = 0; r < w.rows(); ++r)
      for (std::size_t j = 0; j < w.kept_cols(); ++j)
        out[r * w.kept_cols() + j] = Value(lowbit::detail::plain_to_float(w.value(r, j)));
  } else {
    const quantized_matrix<Scheme> kept = w.kept_values();
    for (std::size_t r = 0; r < w.rows(); ++r)
      for (std::size_t j = 0; j < w.kept_cols(); ++j) {
        if constexpr (std::is_same<Value, int8_t>::value) {
          static_assert(std::is_same<typename Scheme::format, int8>::value && !Scheme::has_zero,
                        "int8 values come from int8 codes without zero points");
          out[r * w.kept_cols() + j] = static_cast<int8_t>(kept.code(r, j));
        } else {
          out[r * w.kept_cols() + j] = Value(reference::dequantize_element(kept.view(), r, j));
        }
      }
  }
  return out;
}

}  // namespace torch_sparse24
}  // namespace lowbit
