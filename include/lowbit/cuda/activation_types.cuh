/// \file
/// \brief The CUDA kernels' activation types, fp16 (__half) and bf16 (__nv_bfloat16), to and from
/// float on the device.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace lowbit {
namespace cuda {
namespace detail {

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

/// x rounded to the nearest T (__half or __nv_bfloat16).
template <class T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (std::is_same<T, __half>::value) return __float2half_rn(x);
  else return __float2bfloat16_rn(x);
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
