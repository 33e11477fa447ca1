/// \file
/// \brief cuda::device_kv_cache: a copy of an attention::kv_cache on the GPU, in the same layout.
///
/// The CPU cache's storage is mirrored row for row (row (seq, head, token) as kv_cache::row says,
/// paged with the same pool and block tables, or contiguous), so that a kernel finds token t of a
/// sequence where the CPU library would: codes, scales (in the scheme's scale type) and zero points
/// as stored, the lengths, and the block tables padded to one width. One change: a contiguous
/// cache's capacity is rounded up to a multiple of 16 on the device, so that every 16-token tile
/// starts at a row divisible by 16 (its scales are then 16-byte aligned for cp.async), as pages are. upload() copies it once; the GPU decode kernel (decode.cuh) reads this view.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../attention/kv_cache.hpp"
#include "packed_weights.cuh"

namespace lowbit {
namespace cuda {

/// What the GPU decode kernel supports of a KV scheme: 8-bit integers (int8, uint8 with zero
/// points), 4-bit integers (int4, uint4 with zero points), FP8 E4M3; float, fp16 or bf16 scales.
template <class Scheme>
struct kv_scheme {
  using format = typename Scheme::format;
  using traits = format_traits<format>;
  static constexpr int bits = Scheme::bits;
  static constexpr bool is_integer = traits::kind == format_kind::integer;
  static constexpr bool is_e4m3 = std::is_same<format, fp8_e4m3>::value;
  using scale_type = typename Scheme::scale_type;
  static constexpr bool supported =
      ((is_integer && (bits == 4 || bits == 8)) || is_e4m3) &&
      (std::is_same<scale_type, float>::value || std::is_same<scale_type, fp16>::value ||
       std::is_same<scale_type, bf16>::value);
  /// The zero point that signed integer codes get once their sign bit is flipped (the kernel's
  /// magic-number dequantization works on unsigned codes); 0 for unsigned codes without zeros.
  static constexpr unsigned implicit_zero = (is_integer && traits::is_signed) ? (1u << (bits - 1)) : 0u;
};

/// One of K or V on the device. Device pointers.
struct kv_rows_view {
  const uint8_t* codes = nullptr;  ///< rows x row_bytes
  const void* scales = nullptr;    ///< rows x groups of the scheme's scale_type (float, fp16 or bf16)
  const uint8_t* zeros = nullptr;  ///< rows x groups zero-point codes, or null
};

/// A borrowed device cache: what the kernels take.
template <class Scheme>
struct kv_view {
  kv_rows_view keys, values;
  const int* lengths = nullptr;       ///< batch
  const uint32_t* tables = nullptr;   ///< paged: batch x table_width pages; null when contiguous
  std::size_t batch = 0, kv_heads = 0, head_dim = 0;
  std::size_t capacity = 0;           ///< contiguous layout: rows per (sequence, head), a multiple of 16
  std::size_t page_tokens = 0;        ///< paged layout: tokens per page (0: contiguous)
  std::size_t table_width = 0;
  std::size_t group_size = 0;         ///< elements of a head vector per scale
  std::size_t groups = 0;             ///< per row
  std::vector<int> host_lengths;      ///< the lengths as uploaded (launch shapes are chosen from them)
};

/// Owns a device copy of a kv_cache (move-only). Made by upload(); view() is what decode() takes.
template <class Scheme>
class device_kv_cache {
 public:
  device_kv_cache() = default;
  const kv_view<Scheme>& view() const noexcept { return view_; }
  /// Bytes of codes, scales and zero points that a decode over every sequence's tokens reads.
  std::size_t bytes_read() const noexcept { return bytes_read_; }

  template <class S>
  friend device_kv_cache<S> upload(const attention::kv_cache<S>& cache);

 private:
  kv_view<Scheme> view_{};
  std::size_t bytes_read_ = 0;
  detail::device_buffer buffers_[8];
};

/// Copies a CPU kv_cache (its current contents, lengths and block tables) to the current device.
/// Preconditions, checked: the scheme is supported (kv_scheme), head_dim is 64 or 128, and the
/// group size a multiple of head_dim / 4 (each lane's share of a key row lies in one group).
template <class Scheme>
device_kv_cache<Scheme> upload(const attention::kv_cache<Scheme>& cache) {
  static_assert(kv_scheme<Scheme>::supported,
                "lowbit::cuda: KV schemes are int8 / uint8+zero / int4 / uint4+zero / fp8_e4m3 with float, fp16 or bf16 scales");
  const attention::kv_shape& s = cache.shape();
  const auto& km = cache.keys().matrix;
  const auto& vm = cache.values().matrix;
  const std::size_t d = s.head_dim, g = km.group_size();
  LOWBIT_CHECK(d == 64 || d == 128, "cuda::upload: head_dim=" << d << " (the GPU decode supports 64 and 128)");
  LOWBIT_CHECK(g % (d / 4) == 0, "cuda::upload: group_size=" << g << " must be a multiple of head_dim / 4 = " << d / 4);
  LOWBIT_CHECK(km.rows() == vm.rows() && km.cols() == d,
               "cuda::upload: the keys are not stored one row per token (per-channel KIVI keys are not supported on the GPU)");
  LOWBIT_CHECK(km.rows() < (std::size_t(1) << 31), "cuda::upload: " << km.rows() << " rows are too many (< 2^31)");

  device_kv_cache<Scheme> out;
  kv_view<Scheme>& v = out.view_;
  v.batch = s.batch;
  v.kv_heads = s.kv_heads;
  v.head_dim = d;
  v.capacity = (s.capacity + 15) / 16 * 16;
  v.page_tokens = s.page_tokens;
  v.group_size = g;
  v.groups = km.groups_per_row();
  int slot = 0;
  const auto put = [&](const void* host, std::size_t bytes) {
    out.buffers_[slot] = detail::upload(host, std::max<std::size_t>(bytes, 1));
    return out.buffers_[slot++].get();
  };
  // Contiguous: each (sequence, head)'s capacity rows copied to a block of v.capacity rows.
  const std::size_t blocks = cache.paged() ? 1 : s.batch * s.kv_heads;
  const std::size_t from_rows = cache.paged() ? km.rows() : s.capacity, to_rows = cache.paged() ? km.rows() : v.capacity;
  const auto spread = [&](const void* src, std::size_t row_size) {
    std::vector<uint8_t> dst(blocks * to_rows * row_size, 0);
    for (std::size_t b = 0; b < blocks; ++b)
      std::memcpy(dst.data() + b * to_rows * row_size, static_cast<const uint8_t*>(src) + b * from_rows * row_size,
                  from_rows * row_size);
    return put(dst.data(), dst.size());
  };
  const auto rows_to_device = [&](const quantized_matrix<Scheme>& m, kv_rows_view& r) {
    r.codes = static_cast<const uint8_t*>(spread(m.codes(), m.row_bytes()));
    r.scales = spread(m.scales(), m.groups_per_row() * sizeof(typename Scheme::scale_type));
    if constexpr (Scheme::has_zero) r.zeros = static_cast<const uint8_t*>(spread(m.zeros(), m.groups_per_row()));
  };
  rows_to_device(km, v.keys);
  rows_to_device(vm, v.values);

  v.host_lengths.resize(s.batch);
  std::size_t tokens = 0;
  for (std::size_t b = 0; b < s.batch; ++b) {
    v.host_lengths[b] = static_cast<int>(cache.length(b));
    tokens += cache.length(b);
  }
  v.lengths = static_cast<const int*>(put(v.host_lengths.data(), s.batch * sizeof(int)));
  if (cache.paged()) {
    std::size_t width = 1;
    for (std::size_t b = 0; b < s.batch; ++b) width = std::max(width, (cache.capacity(b) + s.page_tokens - 1) / s.page_tokens);
    std::vector<uint32_t> tables(s.batch * width, 0);
    for (std::size_t b = 0; b < s.batch; ++b)
      for (std::size_t p = 0; p * s.page_tokens < cache.length(b); ++p)
        tables[b * width + p] = static_cast<uint32_t>(cache.row(b, 0, p * s.page_tokens) / (s.kv_heads * s.page_tokens));
    v.table_width = width;
    v.tables = static_cast<const uint32_t*>(put(tables.data(), tables.size() * sizeof(uint32_t)));
  }
  const std::size_t row_bytes = km.row_bytes() + v.groups * (sizeof(typename Scheme::scale_type) + (Scheme::has_zero ? 1 : 0));
  out.bytes_read_ = 2 * tokens * s.kv_heads * row_bytes;
  return out;
}

}  // namespace cuda
}  // namespace lowbit
