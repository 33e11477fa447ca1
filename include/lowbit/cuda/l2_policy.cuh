/// \file
/// \brief L2 cache policies for the GEMM kernels' weight copies (createpolicy, cp.async ... L2::cache_hint; sm_80+).
///
/// A weight-only GEMM at small M reads each weight byte once, while every block reads the same
/// activations: copying the weights with an evict_first policy lets their lines go first, so that
/// the stream of weights does not push the activations out of L2 (gemm.cuh and sparse24_gemm.cuh).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lowbit {
namespace cuda {
namespace detail {

/// An L2 policy for data read once: its lines are the first to go. Make it once a thread.
__device__ __forceinline__ uint64_t l2_evict_first() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

/// An L2 policy for data that other blocks read again (the W8A8 2:4 weights at M > one block of tokens).
__device__ __forceinline__ uint64_t l2_evict_normal() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

/// cp.async of 16 bytes (L1 bypassed) with an L2 cache policy.
__device__ __forceinline__ void cp_async16_hint(void* shared, const void* global, uint64_t policy) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(address), "l"(global), "l"(policy));
}
/// The same to a 32-bit shared-memory address (__cvta_generic_to_shared).
__device__ __forceinline__ void cp_async16_hint_at(unsigned shared, const void* global, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(shared), "l"(global), "l"(policy));
}
/// The same when `copy` (predicated, not branched around).
__device__ __forceinline__ void cp_async16_hint_if(unsigned shared, const void* global, bool copy, uint64_t policy) {
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %2, 0;\n @p cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %3;\n}" ::"r"(
          shared),
      "l"(global), "r"(static_cast<int>(copy)), "l"(policy));
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
