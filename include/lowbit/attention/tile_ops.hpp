/// \file
/// \brief What the attention kernels (decode, prefill) share: the 16-token tile, K and V rows of a
/// kv_cache turned into floats in an L1 tile, the executor's thread count, a prefetch helper.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <type_traits>

#include "../arch/dispatch.hpp"
#include "../kernels/dequantize.hpp"
#include "../kernels/simd/ops.hpp"
#include "kv_cache.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace attention {
namespace detail {

constexpr std::size_t tile_tokens = 16;

/// Threads an executor offers: its concurrency() when it says, else the hardware's (an engine's
/// lambda executor says nothing; more chunks than threads only cost a little merging).
template <class Executor>
auto threads_of(const Executor& exec, int) -> decltype(std::size_t(exec.concurrency())) {
  return exec.concurrency();
}
template <class Executor>
std::size_t threads_of(const Executor&, long) {
  return std::max<std::size_t>(1, std::thread::hardware_concurrency());
}

template <class Element, class = void>
struct is_int8_rows : std::false_type {};
template <class Element>
struct is_int8_rows<Element, std::enable_if_t<is_scheme<Element>::value>>
    : std::integral_constant<bool, std::is_same<typename Element::format, int8>::value && !Element::has_zero> {};

/// Rows [r0, r0 + n) of K or V as floats, row i at out + i * d.
template <class Tag, class Element>
void rows_to_float(const kv_rows<Element>& rows, std::size_t r0, std::size_t n, std::size_t d, float* out) {
  if constexpr (is_int8_rows<Element>::value && !std::is_same<Tag, arch::scalar_tag>::value) {
#if defined(LOWBIT_COMPILED_SSE42)
    // int8 codes times their group's scale: widen, convert, multiply; a tenth of the general
    // row decoder's bookkeeping for these short rows (same float operations, same results).
    using O = simd::ops<Tag>;
    using f32 = typename O::f32;
    using i32 = typename O::i32;
    constexpr std::size_t W = O::lanes;
    const std::size_t g = rows.matrix.group_size(), groups = rows.matrix.groups_per_row();
    if (g % W == 0) {
      for (std::size_t i = 0; i < n; ++i) {
        const uint8_t* codes = rows.matrix.codes() + (r0 + i) * d;
        const auto* scales = rows.matrix.scales() + (r0 + i) * groups;
        for (std::size_t e = 0; e < d; e += W) {
          i32 v[1];
          O::unpack8s(codes + e, v);
          (O::to_f32(v[0]) * f32(scale_traits<typename Element::scale_type>::to_float(scales[e / g])))
              .store_aligned(out + i * d + e);
        }
      }
      return;
    }
#endif
    dequantize_rows<Tag>(rows.matrix.view(), r0, r0 + n, out, d);
  } else if constexpr (std::is_same<Element, float>::value) {
    std::copy(rows.data.data() + r0 * d, rows.data.data() + (r0 + n) * d, out);
  } else if constexpr (std::is_same<Element, bf16>::value) {
    for (std::size_t i = 0; i < n * d; ++i) out[i] = rows.data[r0 * d + i].to_float();
  } else {
    dequantize_rows<Tag>(rows.matrix.view(), r0, r0 + n, out, d);
  }
}

/// Asks for `bytes` from p in L1, a cache line at a time.
inline void prefetch(const void* p, std::size_t bytes) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  for (std::size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(static_cast<const char*>(p) + offset);
#else
  (void)p, (void)bytes;
#endif
}

}  // namespace detail
}  // namespace attention
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
