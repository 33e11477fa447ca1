/// \file
/// \brief cuda::append: quantizes new K/V tokens (fp16 or bf16, on the device) into a
/// device_kv_cache on the GPU, bit for bit as attention::kv_cache::append does on the CPU.
///
///   lowbit::cuda::device_kv_cache<lowbit::scheme<lowbit::int8, lowbit::fp16>> cache(shape);
///   const std::size_t seqs[] = {0, 1, 2}, counts[] = {1, 1, 1};   // host arrays
///   lowbit::cuda::append(cache, k, v, seqs, counts, 3, stream);  // k, v: device [3][kv_heads][head_dim]
///   lowbit::cuda::decode(q, cache.view(), out, q_heads, workspace, stream);
///
/// One warp quantizes one token-head row of K or V (head_dim / 32 elements a lane, a scale group 8,
/// 16 or 32 lanes; head_dim 80 and 96: 4 elements a lane on the first 20 or 24 lanes, a group 5 to
/// 24 lanes), reduced by shuffles. The quantizer replays quantize_rtn's float operations
/// in its order with correctly rounded intrinsics (__fdiv_rn, __fsub_rn, __fadd_rn: no FMA
/// contraction, no approximate division whatever the compile flags): range min / max from 0, the
/// first element of largest magnitude as the symmetric extreme, the scale rounded to the scale type
/// and read back, zero = rint(qmin - lo / scale) clamped, code = encode(x / scale + zero) by the
/// format's own LOWBIT_HD encode. So the codes, scales and zero points equal the CPU cache's for
/// the same inputs widened to float (tests/cuda/test_cuda_decode.cu compares them byte for byte).
/// Not replayed: the CPU's lowbit::error for non-finite inputs or a scale the scale type cannot
/// hold (bf16 inputs above ~1e5 with fp16 scales); such rows get whatever codes the arithmetic
/// gives (inf / NaN scales), so inputs must be finite and fit the scale type. KIVI per-channel keys
/// are not supported by the GPU cache (upload rejects them), so neither here.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "activation_types.cuh"
#include "kv_cache.cuh"

namespace lowbit {
namespace cuda {

namespace detail {

/// One sequence's share of an append call: tokens [first, first + count) of k / v go to positions
/// [position, position + count) of sequence seq.
struct kv_append_entry {
  int seq, first, position, count;
};
inline constexpr int kv_append_max_entries = 64;  ///< entries a launch carries in its parameters (1 KiB)
struct kv_append_entries {
  kv_append_entry e[kv_append_max_entries];
  int n;
};

/// The kernel's view of the cache storage (writable).
struct kv_append_params {
  uint8_t *key_codes, *value_codes, *key_zeros, *value_zeros;
  void *key_scales, *value_scales;
  int* lengths;
  const uint32_t* tables;
  int kv_heads, capacity, page_tokens, table_width, groups;
};

/// Elements of a row a lane quantizes: head_dim / 32 (2, 4 or 8), or 4 for head_dim 80 and 96.
__host__ __device__ constexpr int append_lane_elements(int d) { return d % 32 == 0 && (d & (d - 1)) == 0 ? d / 32 : 4; }

/// x reduced over the `Lanes` lanes of a scale group (segments of the warp starting at multiples of
/// Lanes) by pick(x, y): xor shuffles when Lanes is a power of two, else each lane reads the segment.
template <int Lanes, class T, class Pick>
__device__ __forceinline__ T lanes_reduce(T x, Pick pick) {
  if constexpr ((Lanes & (Lanes - 1)) == 0) {
#pragma unroll
    for (int o = Lanes / 2; o > 0; o /= 2) x = pick(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
  } else {
    const int base = (static_cast<int>(threadIdx.x & 31) / Lanes) * Lanes;
    T r = __shfl_sync(0xffffffffu, x, base);  // (past lane 31 for the idle lanes' segment: wraps, unused)
#pragma unroll
    for (int i = 1; i < Lanes; ++i) r = pick(r, __shfl_sync(0xffffffffu, x, base + i));
    return r;
  }
}

/// Quantizes one row (E elements a lane, groups of Lanes lanes; lanes past D / E idle, holding zeros)
/// and stores its codes, scale and zero point: quantize_rtn's operations in its order (see the file
/// comment; minimum, maximum and the first extreme do not depend on the order of the reduction).
template <class Scheme, int D, int Lanes>
__device__ __forceinline__ void quantize_row(const float (&x)[append_lane_elements(D)], int lane, uint8_t* codes,
                                             void* scales, uint8_t* zeros) {
  using format = typename Scheme::format;
  using traits = format_traits<format>;
  using scale_type = typename Scheme::scale_type;
  constexpr int E = append_lane_elements(D);
  const bool active = D / E == 32 || lane < D / E, leader = active && lane % Lanes == 0;
  float scale = 0.0f, zero = 0.0f;
  if constexpr (Scheme::has_zero) {
    float lo = 0.0f, hi = 0.0f;  // the range of the group and 0, as std::min / std::max from 0
#pragma unroll
    for (int e = 0; e < E; ++e) lo = x[e] < lo ? x[e] : lo, hi = hi < x[e] ? x[e] : hi;
    lo = lanes_reduce<Lanes>(lo, [](float a, float b) { return b < a ? b : a; });
    hi = lanes_reduce<Lanes>(hi, [](float a, float b) { return a < b ? b : a; });
    const scale_type stored = scale_traits<scale_type>::from_float(
        __fdiv_rn(__fsub_rn(hi, lo), traits::max_finite - traits::min_value));
    scale = scale_traits<scale_type>::to_float(stored);
    if (leader) static_cast<scale_type*>(scales)[lane / Lanes] = stored;
    float z = scale > 0.0f ? rintf(__fsub_rn(traits::min_value, __fdiv_rn(lo, scale))) : 0.0f;
    z = traits::min_value < z ? z : traits::min_value;  // std::max(z, min)
    z = z < traits::max_finite ? z : traits::max_finite;  // std::min(z, max)
    const uint8_t zcode = traits::encode(z);
    if (leader) zeros[lane / Lanes] = zcode;
    zero = traits::decode(zcode);
  } else {
    // The extreme: the first element (lowest index) of largest magnitude, with its sign.
    float amax = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) amax = fmaxf(amax, fabsf(x[e]));
    amax = lanes_reduce<Lanes>(amax, [](float a, float b) { return a < b ? b : a; });
    unsigned first = ~0u;  // 2 x index + sign of the lane's first element of magnitude amax
#pragma unroll
    for (int e = E - 1; e >= 0; --e)
      if (fabsf(x[e]) == amax) first = 2u * static_cast<unsigned>(lane * E + e) + (x[e] < 0.0f ? 1u : 0u);
    first = lanes_reduce<Lanes>(first, [](unsigned a, unsigned b) { return min(a, b); });
    const float extreme = amax > 0.0f && (first & 1u) ? -amax : amax;  // 0 when the group is all zeros
    const float raw = (extreme < 0.0f && traits::min_value < 0.0f) ? __fdiv_rn(extreme, traits::min_value)
                                                                  : __fdiv_rn(fabsf(extreme), traits::max_finite);
    const scale_type stored = scale_traits<scale_type>::from_float(raw);
    scale = scale_traits<scale_type>::to_float(stored);
    if (leader) static_cast<scale_type*>(scales)[lane / Lanes] = stored;
  }
  uint8_t c[E];
#pragma unroll
  for (int e = 0; e < E; ++e) c[e] = traits::encode(scale > 0.0f ? __fadd_rn(__fdiv_rn(x[e], scale), zero) : zero);
  // The lane's E codes (E = 2, 4 or 8) in one store: 8-bit E bytes, 4-bit E / 2 (element 2j in the
  // low nibble of byte j).
  if (!active) return;
  if constexpr (Scheme::bits == 8) {
    uint32_t w[(E + 3) / 4] = {};
#pragma unroll
    for (int e = 0; e < E; ++e) w[e / 4] |= static_cast<uint32_t>(c[e]) << (8 * (e % 4));
    if constexpr (E == 8) reinterpret_cast<::uint2*>(codes)[lane] = make_uint2(w[0], w[1]);
    else if constexpr (E == 4) reinterpret_cast<uint32_t*>(codes)[lane] = w[0];
    else reinterpret_cast<uint16_t*>(codes)[lane] = static_cast<uint16_t>(w[0]);
  } else {
    uint32_t w = 0;
#pragma unroll
    for (int e = 0; e < E; ++e) w |= static_cast<uint32_t>(c[e] & 15) << (4 * e);
    if constexpr (E == 8) reinterpret_cast<uint32_t*>(codes)[lane] = w;
    else if constexpr (E == 4) reinterpret_cast<uint16_t*>(codes)[lane] = static_cast<uint16_t>(w);
    else codes[lane] = static_cast<uint8_t>(w);
  }
}

/// Warp w of the grid quantizes row (token w / (2 kv_heads), head) of K (w % (2 kv_heads) < kv_heads)
/// or V; token counts from the launch's first token (entries[0].first).
template <class Scheme, int D, int Lanes, class T>
__global__ void __launch_bounds__(256) kv_append_kernel(const T* __restrict__ k, const T* __restrict__ v,
                                                        std::size_t token_stride, kv_append_params p,
                                                        kv_append_entries entries, int tokens) {
  constexpr int E = append_lane_elements(D);
  const int lane = threadIdx.x & 31;
  const long long w = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int token = static_cast<int>(w / (2 * p.kv_heads)), part = static_cast<int>(w % (2 * p.kv_heads));
  if (token >= tokens) return;
  const int at = entries.e[0].first + token;
  int lo = 0, hi = entries.n - 1;  // the last entry whose first token is <= at
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (entries.e[mid].first <= at) lo = mid;
    else hi = mid - 1;
  }
  const kv_append_entry en = entries.e[lo];
  const bool is_value = part >= p.kv_heads;
  const int head = is_value ? part - p.kv_heads : part;
  const int t = en.position + (at - en.first);
  std::size_t row;
  if (p.page_tokens) {
    const uint32_t page = p.tables[static_cast<std::size_t>(en.seq) * p.table_width + t / p.page_tokens];
    row = (static_cast<std::size_t>(page) * p.kv_heads + head) * p.page_tokens + t % p.page_tokens;
  } else {
    row = (static_cast<std::size_t>(en.seq) * p.kv_heads + head) * p.capacity + t;
  }
  const T* src = (is_value ? v : k) + static_cast<std::size_t>(at) * token_stride + static_cast<std::size_t>(head) * D + lane * E;
  float x[E];
#pragma unroll
  for (int e = 0; e < E; ++e) x[e] = D / E == 32 || lane < D / E ? to_float(src[e]) : 0.0f;
  using scale_type = typename Scheme::scale_type;
  quantize_row<Scheme, D, Lanes>(x, lane, (is_value ? p.value_codes : p.key_codes) + row * (D * Scheme::bits / 8),
                                 static_cast<scale_type*>(is_value ? p.value_scales : p.key_scales) + row * p.groups,
                                 Scheme::has_zero ? (is_value ? p.value_zeros : p.key_zeros) + row * p.groups : nullptr);
  if (part == 0 && lane == 0 && at == en.first) p.lengths[en.seq] = en.position + en.count;
}

/// cuda::append's access to a device_kv_cache's storage and host mirror.
struct kv_cache_writer {
  template <class Scheme>
  static kv_append_params params(device_kv_cache<Scheme>& c) {
    const kv_view<Scheme>& v = c.view_;
    return {const_cast<uint8_t*>(v.keys.codes),  const_cast<uint8_t*>(v.values.codes),
            const_cast<uint8_t*>(v.keys.zeros),  const_cast<uint8_t*>(v.values.zeros),
            const_cast<void*>(v.keys.scales),    const_cast<void*>(v.values.scales),
            const_cast<int*>(v.lengths),         v.tables,
            static_cast<int>(v.kv_heads),        static_cast<int>(v.capacity),
            static_cast<int>(v.page_tokens),     static_cast<int>(v.table_width),
            static_cast<int>(v.groups)};
  }
  template <class Scheme>
  static void advance(device_kv_cache<Scheme>& c, std::size_t seq, std::size_t count) {
    c.view_.host_lengths[seq] += static_cast<int>(count);
  }
};

template <class Scheme, int D, class T>
void kv_append_launch(const T* k, const T* v, std::size_t token_stride, const kv_append_params& p,
                      const kv_append_entries& entries, int tokens, std::size_t group_size, cudaStream_t stream) {
  const long long warps = 2LL * tokens * p.kv_heads;
  const unsigned blocks = static_cast<unsigned>((warps + 7) / 8);
  // Lanes a group: 8, 16 or 32 (head_dim 64, 128, 256); 5, 10, 20 (80); 6, 12, 24 (96).
  const int lanes = static_cast<int>(group_size) / append_lane_elements(D);
  const auto launch = [&](auto lanes_constant) {
    if (lanes != decltype(lanes_constant)::value) return false;
    kv_append_kernel<Scheme, D, decltype(lanes_constant)::value, T><<<blocks, 256, 0, stream>>>(k, v, token_stride, p, entries, tokens);
    return true;
  };
  constexpr int q = D / append_lane_elements(D) / 4;  // the smallest group: head_dim / 4 elements
  const bool launched = launch(std::integral_constant<int, q>{}) || launch(std::integral_constant<int, 2 * q>{}) ||
                        launch(std::integral_constant<int, 4 * q>{});
  LOWBIT_CHECK(launched, "cuda::append: group_size=" << group_size << " with head_dim " << D);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace detail

/// Appends counts[i] tokens to sequence seqs[i], i < n (seqs and counts: host arrays), on `stream`
/// (asynchronous). k and v: device fp16 (__half) or bf16 (__nv_bfloat16) tokens of the entries in
/// order (entry i's from token counts[0] + ... + counts[i - 1]), each kv_heads x head_dim values,
/// token_stride elements apart (0: kv_heads x head_dim; larger for a fused QKV projection's
/// output). Writes the codes, scales, zero points and the new lengths on the device, and advances
/// the host mirror (device_kv_cache::length) before returning. Checked, before anything is queued
/// (a failing call changes nothing): each sequence index below the batch and listed once, its
/// tokens within its capacity (contiguous) or its mapped pages (paged), k and v non-null.
template <class Scheme, class T>
void append(device_kv_cache<Scheme>& cache, const T* k, const T* v, const std::size_t* seqs, const std::size_t* counts,
            std::size_t n, cudaStream_t stream = nullptr, std::size_t token_stride = 0) {
  static_assert(std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value,
                "cuda::append: k and v are __half or __nv_bfloat16");
  const kv_view<Scheme>& view = cache.view();
  LOWBIT_CHECK(view.keys.codes != nullptr, "cuda::append: the cache is empty (default-constructed)");
  LOWBIT_CHECK(n == 0 || (seqs != nullptr && counts != nullptr), "cuda::append: seqs or counts is null");
  const std::size_t d = view.head_dim, row = view.kv_heads * d;
  if (token_stride == 0) token_stride = row;
  LOWBIT_CHECK(token_stride >= row, "cuda::append: token_stride=" << token_stride << " is below kv_heads x head_dim = " << row);
  std::vector<bool> seen(view.batch, false);
  std::size_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t seq = seqs[i];
    LOWBIT_CHECK(seq < view.batch, "cuda::append: sequence " << seq << " (entry " << i << ") of a batch of " << view.batch);
    LOWBIT_CHECK(!seen[seq], "cuda::append: sequence " << seq << " is listed twice");
    seen[seq] = true;
    LOWBIT_CHECK(counts[i] <= cache.capacity(seq) - cache.length(seq),
                 "cuda::append: sequence " << seq << " holds " << cache.length(seq) << " tokens; " << counts[i]
                                           << " more overflow its " << (cache.paged() ? "mapped pages' " : "")
                                           << "capacity of " << cache.capacity(seq));
    total += counts[i];
  }
  if (total == 0) return;
  LOWBIT_CHECK(k != nullptr && v != nullptr, "cuda::append: k or v is null");
  LOWBIT_CHECK(total < (std::size_t(1) << 30), "cuda::append: " << total << " tokens in one call (< 2^30)");
  const detail::kv_append_params p = detail::kv_cache_writer::params(cache);
  detail::kv_append_entries entries{};
  std::size_t first = 0, chunk_first = 0;
  const auto flush = [&] {
    if (entries.n == 0) return;
    const int tokens = static_cast<int>(first - chunk_first);
    if (d == 64) detail::kv_append_launch<Scheme, 64>(k, v, token_stride, p, entries, tokens, view.group_size, stream);
    else if (d == 80) detail::kv_append_launch<Scheme, 80>(k, v, token_stride, p, entries, tokens, view.group_size, stream);
    else if (d == 96) detail::kv_append_launch<Scheme, 96>(k, v, token_stride, p, entries, tokens, view.group_size, stream);
    else if (d == 128) detail::kv_append_launch<Scheme, 128>(k, v, token_stride, p, entries, tokens, view.group_size, stream);
    else detail::kv_append_launch<Scheme, 256>(k, v, token_stride, p, entries, tokens, view.group_size, stream);
    entries.n = 0;
    chunk_first = first;
  };
  for (std::size_t i = 0; i < n; ++i) {
    if (counts[i] == 0) continue;
    entries.e[entries.n++] = {static_cast<int>(seqs[i]), static_cast<int>(first), static_cast<int>(cache.length(seqs[i])),
                              static_cast<int>(counts[i])};
    first += counts[i];
    if (entries.n == detail::kv_append_max_entries) flush();
  }
  flush();
  for (std::size_t i = 0; i < n; ++i) detail::kv_cache_writer::advance(cache, seqs[i], counts[i]);
}

}  // namespace cuda
}  // namespace lowbit
