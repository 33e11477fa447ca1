/// \file
/// \brief The SIMD panel layout: rows interleaved in panels of 16 so one 512-bit load feeds 16 outputs.
///
/// Rows are taken 16 at a time (a panel; the last one padded with zero codes). Along K a panel is
/// cut into chunks of `lane_elements` codes that fill one 32-bit lane per row, so a chunk is 64
/// bytes = one AVX-512 register with row i in lane i, the operand shape of VNNI's vpdpbusd:
/// - 8-bit formats (and 6-bit ones, one code a byte here): 4 codes a lane, byte b = code(k0 + b).
/// - 4-bit formats: 8 codes a lane, byte b = code(k0 + b) | code(k0 + 4 + b) << 4, so masking the
///   low nibbles gives the bytes for k0..k0+3 and shifting gives k0+4..k0+7.
/// Codes past `cols` are padding (zero). Scales and zero points are stored [panel][group][16], a
/// vector of 16 per group. The group size must be a multiple of lane_elements (or the whole row),
/// so a chunk never straddles two groups.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "quantized_matrix.hpp"

namespace lowbit {

template <class Scheme>
class panel_matrix {
 public:
  using scheme_type = Scheme;
  using scale_type = typename Scheme::scale_type;
  static constexpr std::size_t panel_rows = 16;
  static constexpr std::size_t lane_bytes = 4;
  static constexpr std::size_t lane_elements = Scheme::bits == 4 ? 8 : 4;
  static constexpr std::size_t chunk_bytes = panel_rows * lane_bytes;

  panel_matrix() = default;
  explicit panel_matrix(const quantized_shape& shape) : shape_(shape) {
    check_quantized_shape(shape_);
    LOWBIT_CHECK(shape_.group_size % lane_elements == 0 || shape_.group_size == shape_.cols,
                 "panel layout: group_size=" << shape_.group_size << " must be a multiple of " << lane_elements
                                             << " (or the whole row, cols=" << shape_.cols << ")");
    data_ = aligned_buffer<uint8_t>(panels() * chunks() * chunk_bytes);
    scales_ = aligned_buffer<scale_type>(panels() * shape_.groups_per_row() * panel_rows);
    if (Scheme::has_zero) zeros_ = aligned_buffer<uint8_t>(panels() * shape_.groups_per_row() * panel_rows);
  }

  const quantized_shape& shape() const noexcept { return shape_; }
  std::size_t panels() const noexcept { return (shape_.rows + panel_rows - 1) / panel_rows; }
  std::size_t chunks() const noexcept { return (shape_.cols + lane_elements - 1) / lane_elements; }
  /// The 64-byte chunk c of panel p.
  const uint8_t* chunk(std::size_t p, std::size_t c) const noexcept { return data_.data() + (p * chunks() + c) * chunk_bytes; }
  uint8_t* chunk(std::size_t p, std::size_t c) noexcept { return data_.data() + (p * chunks() + c) * chunk_bytes; }
  /// The 16 scales (one per row of the panel) of group g of panel p.
  const scale_type* scales(std::size_t p, std::size_t g) const noexcept {
    return scales_.data() + (p * shape_.groups_per_row() + g) * panel_rows;
  }
  scale_type* scales(std::size_t p, std::size_t g) noexcept {
    return scales_.data() + (p * shape_.groups_per_row() + g) * panel_rows;
  }
  const uint8_t* zeros(std::size_t p, std::size_t g) const noexcept {
    return Scheme::has_zero ? zeros_.data() + (p * shape_.groups_per_row() + g) * panel_rows : nullptr;
  }
  uint8_t* zeros(std::size_t p, std::size_t g) noexcept {
    return Scheme::has_zero ? zeros_.data() + (p * shape_.groups_per_row() + g) * panel_rows : nullptr;
  }
  std::size_t storage_bytes() const noexcept { return data_.size() + scales_.size() * sizeof(scale_type) + zeros_.size(); }

  /// Byte offset inside a chunk and nibble shift of element (row i of the panel, k).
  static void locate(std::size_t i, std::size_t k, std::size_t& byte, unsigned& shift) noexcept {
    const std::size_t within = k % lane_elements;
    if (Scheme::bits == 4) {
      byte = i * lane_bytes + within % 4;
      shift = within < 4 ? 0u : 4u;
    } else {
      byte = i * lane_bytes + within;
      shift = 0u;
    }
  }

 private:
  quantized_shape shape_{};
  aligned_buffer<uint8_t> data_;
  aligned_buffer<scale_type> scales_;
  aligned_buffer<uint8_t> zeros_;
};

/// Repacks a reference-layout matrix into panels (once, at load time).
template <class Scheme>
panel_matrix<Scheme> pack_panels(const quantized_view<Scheme>& w) {
  w.validate();
  panel_matrix<Scheme> out(w.shape);
  using panel = panel_matrix<Scheme>;
  constexpr std::size_t rows_per_panel = panel::panel_rows;
  // 4- and 8-bit codes: whole lanes move as 4 bytes (a load-time cost of ~1 ns a lane, not ~1 ns
  // a code); the tail lane and 6-bit codes go element by element.
  constexpr bool whole_lanes = Scheme::bits == 4 || Scheme::bits == 8;
  const std::size_t full_lanes = whole_lanes ? w.cols() / panel::lane_elements : 0;
  for (std::size_t r = 0; r < w.rows(); ++r) {
    const std::size_t p = r / rows_per_panel, i = r % rows_per_panel;
    const uint8_t* src = w.row_codes(r);
    for (std::size_t c = 0; c < full_lanes; ++c) {
      uint8_t* dst = out.chunk(p, c) + i * panel::lane_bytes;
      uint32_t v = 0;  // reference bytes: code j in bits 4j (4-bit) or 8j (8-bit)
      for (std::size_t b = 0; b < 4; ++b) v |= static_cast<uint32_t>(src[c * 4 + b]) << (8 * b);
      for (std::size_t b = 0; b < 4; ++b)
        dst[b] = Scheme::bits == 8 ? static_cast<uint8_t>(v >> (8 * b))
                                   : static_cast<uint8_t>(((v >> (4 * b)) & 15u) | (((v >> (16 + 4 * b)) & 15u) << 4));
    }
    for (std::size_t k = full_lanes * panel::lane_elements; k < w.cols(); ++k) {
      std::size_t byte;
      unsigned shift;
      panel_matrix<Scheme>::locate(i, k, byte, shift);
      uint8_t* chunk = out.chunk(p, k / panel_matrix<Scheme>::lane_elements);
      chunk[byte] = static_cast<uint8_t>(chunk[byte] | (w.code(r, k) << shift));
    }
    for (std::size_t g = 0; g < w.groups_per_row(); ++g) {
      out.scales(p, g)[i] = w.row_scales(r)[g];
      if (Scheme::has_zero) out.zeros(p, g)[i] = w.row_zeros(r)[g];
    }
  }
  return out;
}

/// The inverse of pack_panels: back to the reference layout, bit for bit.
template <class Scheme>
quantized_matrix<Scheme> unpack_panels(const panel_matrix<Scheme>& packed) {
  const quantized_shape& s = packed.shape();
  quantized_matrix<Scheme> out(s.rows, s.cols, s.group_size);
  constexpr std::size_t rows_per_panel = panel_matrix<Scheme>::panel_rows;
  const uint8_t mask = static_cast<uint8_t>((1u << Scheme::bits) - 1u);
  for (std::size_t r = 0; r < s.rows; ++r) {
    const std::size_t p = r / rows_per_panel, i = r % rows_per_panel;
    for (std::size_t k = 0; k < s.cols; ++k) {
      std::size_t byte;
      unsigned shift;
      panel_matrix<Scheme>::locate(i, k, byte, shift);
      out.set_code(r, k, static_cast<uint8_t>((packed.chunk(p, k / panel_matrix<Scheme>::lane_elements)[byte] >> shift) & mask));
    }
    for (std::size_t g = 0; g < s.groups_per_row(); ++g) {
      out.scale(r, g) = packed.scales(p, g)[i];
      if (Scheme::has_zero) out.zero(r, g) = packed.zeros(p, g)[i];
    }
  }
  return out;
}

}  // namespace lowbit
