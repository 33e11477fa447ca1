// The CPU decode for the GPU decode test (see decode_reference.hpp).
#include "decode_reference.hpp"

#include "lowbit/attention/decode.hpp"

namespace lowbit_test {

template <class Element>
void cpu_decode(const float* q, const lowbit::attention::kv_cache<Element>& cache, float* out, std::size_t q_heads,
                float scale) {
  lowbit::attention::decode_options options;
  options.scale = scale;
  lowbit::attention::decode(q, cache, out, q_heads, options);
}

template void cpu_decode(const float*, const lowbit::attention::kv_cache<kv::int8_f16>&, float*, std::size_t, float);
template void cpu_decode(const float*, const lowbit::attention::kv_cache<kv::uint8z_f16>&, float*, std::size_t, float);
template void cpu_decode(const float*, const lowbit::attention::kv_cache<kv::int4_f16>&, float*, std::size_t, float);
template void cpu_decode(const float*, const lowbit::attention::kv_cache<kv::uint4z_f16>&, float*, std::size_t, float);
template void cpu_decode(const float*, const lowbit::attention::kv_cache<kv::e4m3_f16>&, float*, std::size_t, float);
template void cpu_decode(const float*, const lowbit::attention::kv_cache<kv::int8_f32>&, float*, std::size_t, float);
template void cpu_decode(const float*, const lowbit::attention::kv_cache<kv::int4_bf16>&, float*, std::size_t, float);

}  // namespace lowbit_test
