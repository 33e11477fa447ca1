/// \file
/// \brief Reading and writing sub-byte codes in a little-endian bit stream (the reference packing).
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.hpp"

namespace lowbit {

/// Bytes that `count` codes of `bits` bits occupy when packed back to back.
LOWBIT_HD constexpr std::size_t packed_bytes(std::size_t count, int bits) noexcept {
  return (count * static_cast<std::size_t>(bits) + 7) / 8;
}

/// Code i of a little-endian bit stream: it occupies bits [i*bits, (i+1)*bits), so with 4-bit codes
/// element 2j is the low nibble of byte j and element 2j+1 the high nibble; a 6-bit code may
/// straddle two bytes. `bits` is 1..8.
LOWBIT_HD inline uint8_t get_packed_code(const uint8_t* stream, std::size_t i, int bits) noexcept {
  if (bits == 8) return stream[i];
  if (bits == 4) return static_cast<uint8_t>((stream[i >> 1] >> ((i & 1) * 4)) & 0xF);
  const std::size_t bit = i * static_cast<std::size_t>(bits);
  const std::size_t byte = bit >> 3;
  const unsigned shift = static_cast<unsigned>(bit & 7);
  unsigned word = stream[byte];
  if (shift + static_cast<unsigned>(bits) > 8) word |= static_cast<unsigned>(stream[byte + 1]) << 8;
  return static_cast<uint8_t>((word >> shift) & ((1u << bits) - 1u));
}

/// Writes code i (only its low `bits` bits) into the stream, leaving the other codes as they are.
LOWBIT_HD inline void set_packed_code(uint8_t* stream, std::size_t i, int bits, uint8_t code) noexcept {
  const unsigned mask = (1u << bits) - 1u;
  const std::size_t bit = i * static_cast<std::size_t>(bits);
  const std::size_t byte = bit >> 3;
  const unsigned shift = static_cast<unsigned>(bit & 7);
  const unsigned value = (static_cast<unsigned>(code) & mask) << shift;
  const unsigned clear = ~(mask << shift);
  stream[byte] = static_cast<uint8_t>((stream[byte] & clear) | value);
  if (shift + static_cast<unsigned>(bits) > 8) {
    stream[byte + 1] = static_cast<uint8_t>((stream[byte + 1] & (clear >> 8)) | (value >> 8));
  }
}

}  // namespace lowbit
