/// \file
/// \brief aligned_buffer: owning, zero-initialized, 64-byte aligned storage for packed data.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <new>
#include <type_traits>

#include "error.hpp"

namespace lowbit {

/// Cache-line (and AVX-512 vector) alignment of every buffer lowbit allocates.
inline constexpr std::size_t buffer_alignment = 64;

/// A fixed-size array of trivially copyable T, aligned to buffer_alignment and zero-filled.
template <class T>
class aligned_buffer {
  static_assert(std::is_trivially_copyable<T>::value, "aligned_buffer holds trivially copyable types");

 public:
  aligned_buffer() = default;
  explicit aligned_buffer(std::size_t size) : size_(size) {
    if (size == 0) return;
    LOWBIT_CHECK(size <= (std::numeric_limits<std::size_t>::max() - buffer_alignment) / sizeof(T),
                 "aligned_buffer: " << size << " elements overflow the address space");
    const std::size_t bytes = (size * sizeof(T) + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
    data_ = static_cast<T*>(::operator new(bytes, std::align_val_t(buffer_alignment)));
    std::fill_n(reinterpret_cast<unsigned char*>(data_), bytes, static_cast<unsigned char>(0));
  }
  aligned_buffer(const aligned_buffer& other) : aligned_buffer(other.size_) {
    std::copy_n(other.data_, size_, data_);
  }
  aligned_buffer(aligned_buffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  aligned_buffer& operator=(aligned_buffer other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~aligned_buffer() {
    if (data_) ::operator delete(data_, std::align_val_t(buffer_alignment));
  }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// True when p is aligned to `alignment` bytes.
inline bool is_aligned(const void* p, std::size_t alignment) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

}  // namespace lowbit
