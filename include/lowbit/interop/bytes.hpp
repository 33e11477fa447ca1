/// \file
/// \brief Reading untrusted bytes: a bounds-checked little-endian cursor and overflow-checked sizes.
///
/// Every file reader in interop/ goes through these, so that a length, offset or count read from
/// a file is checked against what is really there before it is used or allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../core/error.hpp"

namespace lowbit {
namespace interop {

/// a * b, or a lowbit::error naming `what` if it does not fit in size_t.
inline std::size_t checked_mul(std::size_t a, std::size_t b, const char* what) {
  LOWBIT_CHECK(b == 0 || a <= std::numeric_limits<std::size_t>::max() / b,
               what << ": " << a << " x " << b << " overflows");
  return a * b;
}

/// a + b, or a lowbit::error naming `what` if it does not fit in size_t.
inline std::size_t checked_add(std::size_t a, std::size_t b, const char* what) {
  LOWBIT_CHECK(a <= std::numeric_limits<std::size_t>::max() - b, what << ": " << a << " + " << b << " overflows");
  return a + b;
}

/// A 64-bit count read from a file as a size_t (it may not fit on a 32-bit host).
inline std::size_t to_size(uint64_t value, const char* what) {
  LOWBIT_CHECK(value <= std::numeric_limits<std::size_t>::max(), what << ": " << value << " does not fit in size_t");
  return static_cast<std::size_t>(value);
}

namespace detail {
template <std::size_t Bytes>
using unsigned_of_size = std::conditional_t<Bytes == 1, uint8_t,
                         std::conditional_t<Bytes == 2, uint16_t, std::conditional_t<Bytes == 4, uint32_t, uint64_t>>>;
}  // namespace detail

/// Reads little-endian values from [data, data + size); reading past the end raises lowbit::error
/// naming the source, the field and the offset. The bytes are borrowed.
class byte_reader {
 public:
  byte_reader(const uint8_t* data, std::size_t size, const char* source) noexcept
      : data_(data), size_(size), source_(source) {}

  std::size_t position() const noexcept { return position_; }
  std::size_t remaining() const noexcept { return size_ - position_; }
  const uint8_t* here() const noexcept { return data_ + position_; }

  /// Checks that n more bytes are there, then returns their start and moves past them.
  const uint8_t* take(std::size_t n, const char* what) {
    LOWBIT_CHECK(n <= remaining(), source_ << ": " << what << " needs " << n << " bytes at offset " << position_
                                           << ", only " << remaining() << " left");
    const uint8_t* p = data_ + position_;
    position_ += n;
    return p;
  }

  /// An unsigned or signed integer, or a float, stored little-endian.
  template <class T>
  T read(const char* what) {
    static_assert(std::is_arithmetic<T>::value, "read<T>: T is an integer or floating-point type");
    const uint8_t* p = take(sizeof(T), what);
    using bits_type = detail::unsigned_of_size<sizeof(T)>;
    bits_type bits = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) bits = static_cast<bits_type>(bits | (static_cast<bits_type>(p[i]) << (8 * i)));
    T value;
    std::memcpy(&value, &bits, sizeof(T));
    return value;
  }

  /// Moves to an absolute offset within the bytes.
  void seek(std::size_t offset, const char* what) {
    LOWBIT_CHECK(offset <= size_, source_ << ": " << what << " offset " << offset << " is past the end (" << size_ << " bytes)");
    position_ = offset;
  }

  const char* source() const noexcept { return source_; }

 private:
  const uint8_t* data_;
  std::size_t size_;
  std::size_t position_ = 0;
  const char* source_;
};

/// Appends little-endian values to a byte string (the writers' side of byte_reader).
template <class T>
void append_le(std::string& out, T value) {
  static_assert(std::is_arithmetic<T>::value, "append_le<T>: T is an integer or floating-point type");
  detail::unsigned_of_size<sizeof(T)> bits;
  std::memcpy(&bits, &value, sizeof(T));
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
}

}  // namespace interop
}  // namespace lowbit
