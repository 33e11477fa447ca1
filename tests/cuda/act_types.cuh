// Host conversions of the activation types (fp16, bf16) that the CUDA tests share.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace lowbit_test {

template <class T>
T to_act(float v) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) return __float2bfloat16(v);
  else return __float2half(v);
}
inline float from_act(__half v) { return __half2float(v); }
inline float from_act(__nv_bfloat16 v) { return __bfloat162float(v); }

}  // namespace lowbit_test
