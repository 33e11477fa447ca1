/// \file
/// \brief The 16-token tile layout in which a kv_cache can also keep int8 / int4 K and V codes
/// (kv_shape::integer_tiles) for the AVX-512 integer decode kernel (decode_tiles.hpp).
///
/// Why: the row layout (one head vector a row) makes the kernel reduce q·k across lanes per
/// token and interleave four tokens' V bytes per lane before each P V product, on every decode
/// step; that shuffling cost more than streaming the bytes. In a tile the bytes already sit
/// where vpdpbusd wants them, written once at append time:
///
/// - K, tokens in lanes: 32-bit lane t (token t of the tile) of 64-byte block c holds four
///   consecutive elements, so vpdpbusd with four query codes broadcast gives 16 tokens' partial
///   dot products at once (no reductions). int8: block c = elements 4c..4c+3, each code + 128
///   (unsigned). int4: block c = elements 8c..8c+7, the low nibbles of lane t's four bytes
///   elements 8c..8c+3, the high nibbles 8c+4..8c+7, each code + 8 (unsigned).
/// - V, elements in lanes: 64-byte block (b, k) lane l holds element 16b + l of tokens
///   4k..4k+3 (one byte each), vpdpbusd against the four tokens' u8 weights broadcast. int8: the
///   codes as they are; int4: block (b2, k) holds blocks (2 b2, k) in its low nibbles and
///   (2 b2 + 1, k) in its high ones, two's complement (so a high nibble in place, as a signed
///   byte, is 16 times its code).
/// - Then the 16 tokens' K scales per group ([group][token]) and V scales, as stored.
///
/// A tile is tile_bytes() long (a multiple of 64); slots of tokens not appended yet hold zeros
/// or stale codes, which the kernel masks. The tile of token t: contiguous, tile t / 16 of the
/// (sequence, head); paged, tile (t % page_tokens) / 16 of the page's head (pages hold whole
/// tiles since page_tokens is a multiple of 16).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../scheme.hpp"

namespace lowbit {
namespace attention {

/// int8 or int4 codes without zero points: what the integer paths read.
template <class Element, class = void>
struct is_int_kv : std::false_type {};
template <class Element>
struct is_int_kv<Element, std::enable_if_t<is_scheme<Element>::value>>
    : std::integral_constant<bool, !Element::has_zero && (std::is_same<typename Element::format, int8>::value ||
                                                          std::is_same<typename Element::format, int4>::value)> {};

/// Byte offsets within a tile of K and V codes for head dimension d (see the file comment).
struct int_tile_layout {
  bool int4 = false;
  std::size_t d = 0, groups = 0, scale_bytes = 0;
  std::size_t k_bytes = 0, v_bytes = 0, bytes = 0;
  int_tile_layout() = default;
  int_tile_layout(bool is_int4, std::size_t head_dim, std::size_t groups_per_row, std::size_t scale_size)
      : int4(is_int4), d(head_dim), groups(groups_per_row), scale_bytes(scale_size),
        k_bytes(is_int4 ? 8 * head_dim : 16 * head_dim), v_bytes(is_int4 ? 256 * ((head_dim + 31) / 32) : 16 * head_dim),
        bytes((k_bytes + v_bytes + 2 * 16 * groups_per_row * scale_size + 63) / 64 * 64) {}
  std::size_t v_offset() const noexcept { return k_bytes; }
  std::size_t k_scales_offset() const noexcept { return k_bytes + v_bytes; }
  std::size_t v_scales_offset() const noexcept { return k_bytes + v_bytes + 16 * groups * scale_bytes; }

  /// Writes token `slot` (0..15) of a tile from its K and V rows in the row layout (codes as the
  /// quantized_matrix holds them, `groups` scales each).
  void store(uint8_t* tile, std::size_t slot, const uint8_t* k_row, const uint8_t* v_row, const void* k_scales,
             const void* v_scales) const noexcept {
    uint8_t* v = tile + v_offset();
    for (std::size_t e = 0; e < d; ++e) {
      const std::size_t v_byte = slot % 4 + 4 * (e % 16) + 64 * (slot / 4);
      if (!int4) {
        tile[4 * (16 * (e / 4) + slot) + e % 4] = static_cast<uint8_t>(k_row[e] ^ 0x80);
        v[v_byte + 256 * (e / 16)] = v_row[e];
      } else {
        // Two's-complement nibbles (V keeps them); xor 8 adds 8 (mod 16) to K's.
        const unsigned k = ((k_row[e / 2] >> (4 * (e % 2))) & 0x0F) ^ 8, vc = (v_row[e / 2] >> (4 * (e % 2))) & 0x0F;
        put_nibble(tile + 4 * (16 * (e / 8) + slot) + e % 4, (e % 8) / 4, k);
        put_nibble(v + v_byte + 256 * (e / 32), (e % 32) / 16, vc);
      }
    }
    for (std::size_t g = 0; g < groups; ++g) {
      std::memcpy(tile + k_scales_offset() + (16 * g + slot) * scale_bytes, static_cast<const uint8_t*>(k_scales) + g * scale_bytes,
                  scale_bytes);
      std::memcpy(tile + v_scales_offset() + (16 * g + slot) * scale_bytes, static_cast<const uint8_t*>(v_scales) + g * scale_bytes,
                  scale_bytes);
    }
  }

 private:
  static void put_nibble(uint8_t* byte, std::size_t high, unsigned value) noexcept {
    const unsigned shift = high ? 4u : 0u;
    *byte = static_cast<uint8_t>((*byte & ~(0x0Fu << shift)) | (value << shift));
  }
};

}  // namespace attention
}  // namespace lowbit
