/// \file
/// \brief matrix_view: a borrowed row-major matrix (pointer, rows, cols, leading dimension).
#pragma once

#include <cstddef>
#include <limits>
#include <type_traits>

#include "error.hpp"

namespace lowbit {

/// Row r, column c is data[r * ld + c]. T may be const. Kernels take views and never own data.
template <class T>
struct matrix_view {
  T* data = nullptr;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::size_t ld = 0;  ///< elements between the starts of consecutive rows (>= cols)

  matrix_view() = default;
  matrix_view(T* data_, std::size_t rows_, std::size_t cols_, std::size_t ld_ = 0) noexcept
      : data(data_), rows(rows_), cols(cols_), ld(ld_ == 0 ? cols_ : ld_) {}
  /// A view of a mutable matrix converts to a view of a const one.
  template <class U, class = std::enable_if_t<std::is_same<const U, T>::value && !std::is_same<U, T>::value>>
  matrix_view(const matrix_view<U>& other) noexcept : data(other.data), rows(other.rows), cols(other.cols), ld(other.ld) {}

  T* row(std::size_t r) const noexcept { return data + r * ld; }
  T& operator()(std::size_t r, std::size_t c) const noexcept { return data[r * ld + c]; }

  /// Throws lowbit::error naming `what` unless the view is non-empty, non-null and ld >= cols.
  void validate(const char* what) const {
    LOWBIT_CHECK(data != nullptr, what << ": data is null");
    LOWBIT_CHECK(rows > 0 && cols > 0, what << ": " << rows << " x " << cols << " is empty");
    LOWBIT_CHECK(ld >= cols, what << ": ld=" << ld << " is smaller than cols=" << cols);
    LOWBIT_CHECK(rows - 1 <= (std::numeric_limits<std::size_t>::max() / sizeof(T) - cols) / ld,
                 what << ": " << rows << " rows of ld=" << ld << " overflow the address space");
  }
};

}  // namespace lowbit
