// The CPU library's decode (lowbit::attention::decode), compiled by the host compiler in
// decode_reference.cpp: nvcc's front end does not need to parse the SIMD kernels.
#pragma once

#include <cstddef>

#include "lowbit/attention/kv_cache.hpp"

namespace lowbit_test {

/// lowbit::attention::decode(q, cache, out, q_heads, {scale}) on the best ISA path of this CPU.
template <class Element>
void cpu_decode(const float* q, const lowbit::attention::kv_cache<Element>& cache, float* out, std::size_t q_heads,
                float scale);

/// The KV schemes the GPU decode test uses (explicitly instantiated in decode_reference.cpp).
namespace kv {
namespace lb = lowbit;
using int8_f16 = lb::scheme<lb::int8, lb::fp16>;
using uint8z_f16 = lb::scheme<lb::uint8, lb::fp16, true>;
using int4_f16 = lb::scheme<lb::int4, lb::fp16>;
using uint4z_f16 = lb::scheme<lb::uint4, lb::fp16, true>;
using e4m3_f16 = lb::scheme<lb::fp8_e4m3, lb::fp16>;
using int8_f32 = lb::scheme<lb::int8, float>;
using int4_bf16 = lb::scheme<lb::int4, lb::bf16>;
}  // namespace kv

}  // namespace lowbit_test
