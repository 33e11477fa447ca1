// Host conversions of the activation types (fp16, bf16) that the CUDA tests share.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace lowbit_test {

template <class T>
T to_act(float v) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) return __float2bfloat16(v);
  else return __float2half(v);
}
inline float from_act(__half v) { return __half2float(v); }
inline float from_act(__nv_bfloat16 v) { return __bfloat162float(v); }

/// How many of an m x ldy output's entries past column n are not NaN: y was filled with NaN before
/// the kernel ran, so these are writes into the padding.
template <class T>
int padding_written(const std::vector<T>& y, std::size_t m, std::size_t n, std::size_t ldy) {
  int written = 0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = n; j < ldy; ++j) written += !std::isnan(from_act(y[i * ldy + j]));
  return written;
}

}  // namespace lowbit_test
