/// \file
/// \brief cuda::device_kv_cache: a KV cache on the GPU in the CPU cache's layout, uploaded from an
/// attention::kv_cache (upload()) or allocated empty on the device and filled by cuda::append.
///
/// The CPU cache's storage is mirrored row for row (row (seq, head, token) as kv_cache::row says,
/// paged with the same pool and block tables, or contiguous), so that a kernel finds token t of a
/// sequence where the CPU library would: codes, scales (in the scheme's scale type) and zero points
/// as stored, the lengths, and the block tables padded to one width. One change: a contiguous
/// cache's capacity is rounded up to a multiple of 16 on the device, so that every 16-token tile
/// starts at a row divisible by 16 (its scales are then 16-byte aligned for cp.async), as pages are.
///
/// The host owns the lengths: the cache keeps a host mirror of them (and of each sequence's
/// capacity) that append() checks and advances when it enqueues its kernel, which writes the new
/// lengths to the device copy that the decode kernel reads; decode chooses its launch shape from the
/// mirror. So overflow is a lowbit::error on the host, at once, with no device round trip.
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

/// A borrowed device cache: what the kernels take. Take it from device_kv_cache::view() after the
/// appends it should see (host_lengths is a copy).
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
  std::vector<int> host_lengths;      ///< the host mirror of the lengths (launch shapes are chosen from them)
};

namespace detail {
struct kv_cache_writer;  // cuda::append's access to the storage and the host mirror (kv_append.cuh)
}  // namespace detail

/// Owns a KV cache on the device (move-only). Made by upload(kv_cache), or empty by the constructor
/// (an engine that decodes on the GPU allocates it directly and fills it with cuda::append).
/// view() is what decode() takes.
template <class Scheme>
class device_kv_cache {
 public:
  static_assert(kv_scheme<Scheme>::supported,
                "lowbit::cuda: KV schemes are int8 / uint8+zero / int4 / uint4+zero / fp8_e4m3 with float, fp16 or bf16 scales");

  device_kv_cache() = default;
  /// An empty cache on the current device, storage zeroed: shape as attention::kv_shape
  /// (integer_tiles is a CPU layout and is ignored), group_size elements of a head vector per scale
  /// (0: the whole vector). Paged: sequences have no pages until map_pages; each sequence's block
  /// table holds up to shape.capacity tokens' pages (shape.capacity 0: the whole pool). Checked:
  /// head_dim 64, 80, 96, 128 or 256, group_size a multiple of head_dim / 4 dividing head_dim, the shape's rules.
  explicit device_kv_cache(const attention::kv_shape& shape, std::size_t group_size = 0) {
    const std::size_t g = group_size ? group_size : shape.head_dim;
    check_shape(shape, g);
    const std::size_t width = shape.page_tokens
                                  ? (shape.capacity ? (shape.capacity + shape.page_tokens - 1) / shape.page_tokens : shape.pages)
                                  : 0;
    allocate(shape, g, width);
  }

  const kv_view<Scheme>& view() const noexcept { return view_; }
  bool paged() const noexcept { return view_.page_tokens != 0; }
  /// Tokens sequence seq holds (the host mirror). Checked: seq < batch.
  std::size_t length(std::size_t seq) const {
    LOWBIT_CHECK(seq < view_.batch, "cuda::device_kv_cache::length: sequence " << seq << " of a batch of " << view_.batch);
    return static_cast<std::size_t>(view_.host_lengths[seq]);
  }
  /// Tokens sequence seq can hold: the capacity, or its mapped pages' tokens. Checked: seq < batch.
  std::size_t capacity(std::size_t seq) const {
    LOWBIT_CHECK(seq < view_.batch, "cuda::device_kv_cache::capacity: sequence " << seq << " of a batch of " << view_.batch);
    return capacities_[seq];
  }
  /// Bytes of codes, scales and zero points that a decode over every sequence's tokens reads.
  std::size_t bytes_read() const noexcept {
    std::size_t tokens = 0;
    for (int n : view_.host_lengths) tokens += static_cast<std::size_t>(n);
    return 2 * tokens * view_.kv_heads * token_head_bytes_;
  }

  /// Paged layout: sequence seq's block table, pages[0 .. count) of the pool (host array) in token
  /// order, as attention::kv_cache::map_pages. Copied to the device synchronously (cudaMemcpy:
  /// after the work queued on the legacy default stream). Checked: paged, seq, each page in the
  /// pool, count within the table width, the pages cover the sequence's tokens.
  void map_pages(std::size_t seq, const uint32_t* pages, std::size_t count) {
    LOWBIT_CHECK(paged(), "cuda::device_kv_cache: map_pages needs the paged layout (page_tokens > 0)");
    LOWBIT_CHECK(seq < view_.batch, "cuda::device_kv_cache: sequence " << seq << " of a batch of " << view_.batch);
    LOWBIT_CHECK(count == 0 || pages != nullptr, "cuda::device_kv_cache: pages is null");
    LOWBIT_CHECK(count <= view_.table_width, "cuda::device_kv_cache: " << count << " pages for sequence " << seq
                                                                       << " exceed the block table's " << view_.table_width);
    for (std::size_t i = 0; i < count; ++i)
      LOWBIT_CHECK(pages[i] < pool_pages_, "cuda::device_kv_cache: page " << pages[i] << " (entry " << i << " of sequence "
                                                                          << seq << ") is past the pool of " << pool_pages_);
    LOWBIT_CHECK(count * view_.page_tokens >= length(seq), "cuda::device_kv_cache: " << count << " pages cannot hold sequence "
                                                                                     << seq << "'s " << length(seq) << " tokens");
    std::vector<uint32_t> row(view_.table_width, 0);
    std::copy(pages, pages + count, row.begin());
    LOWBIT_CUDA_CHECK(cudaMemcpy(const_cast<uint32_t*>(view_.tables) + seq * view_.table_width, row.data(),
                                 row.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
    capacities_[seq] = count * view_.page_tokens;
  }
  /// Forgets sequence seq's tokens (host mirror and device length; the device copy is synchronous).
  void clear(std::size_t seq) {
    LOWBIT_CHECK(seq < view_.batch, "cuda::device_kv_cache: sequence " << seq << " of a batch of " << view_.batch);
    const int zero = 0;
    LOWBIT_CUDA_CHECK(cudaMemcpy(const_cast<int*>(view_.lengths) + seq, &zero, sizeof(int), cudaMemcpyHostToDevice));
    view_.host_lengths[seq] = 0;
  }

  template <class S>
  friend device_kv_cache<S> upload(const attention::kv_cache<S>& cache);
  friend struct detail::kv_cache_writer;

 private:
  static void check_shape(const attention::kv_shape& s, std::size_t g) {
    const std::size_t d = s.head_dim;
    LOWBIT_CHECK(s.batch > 0 && s.kv_heads > 0, "cuda::device_kv_cache: batch and kv_heads must be positive");
    LOWBIT_CHECK(d == 64 || d == 80 || d == 96 || d == 128 || d == 256,
                 "cuda::device_kv_cache: head_dim=" << d << " (the GPU decode supports 64, 80, 96, 128 and 256)");
    LOWBIT_CHECK(g % (d / 4) == 0 && d % g == 0,
                 "cuda::device_kv_cache: group_size=" << g << " must be a multiple of head_dim / 4 = " << d / 4 << " dividing head_dim");
    if (s.page_tokens) {
      LOWBIT_CHECK(s.page_tokens % 16 == 0 && s.pages > 0, "cuda::device_kv_cache: page_tokens=" << s.page_tokens
                                                               << " must be a multiple of 16 and pages=" << s.pages << " positive");
      LOWBIT_CHECK(s.pages * s.kv_heads * s.page_tokens < (std::size_t(1) << 31), "cuda::device_kv_cache: too many rows (< 2^31)");
    } else {
      LOWBIT_CHECK(s.capacity > 0, "cuda::device_kv_cache: capacity must be positive");
      LOWBIT_CHECK(s.batch * s.kv_heads * ((s.capacity + 15) / 16 * 16) < (std::size_t(1) << 31),
                   "cuda::device_kv_cache: too many rows (< 2^31)");
    }
  }

  /// Zeroed storage for shape (checked), group size g, block tables of `width` pages.
  void allocate(const attention::kv_shape& s, std::size_t g, std::size_t width) {
    kv_view<Scheme>& v = view_;
    v.batch = s.batch;
    v.kv_heads = s.kv_heads;
    v.head_dim = s.head_dim;
    v.capacity = s.page_tokens ? 0 : (s.capacity + 15) / 16 * 16;
    v.page_tokens = s.page_tokens;
    v.group_size = g;
    v.groups = s.head_dim / g;
    v.table_width = width;
    pool_pages_ = s.pages;
    capacities_.assign(s.batch, s.page_tokens ? 0 : s.capacity);
    v.host_lengths.assign(s.batch, 0);
    rows_ = s.page_tokens ? s.pages * s.kv_heads * s.page_tokens : s.batch * s.kv_heads * v.capacity;
    const std::size_t code_bytes = s.head_dim * Scheme::bits / 8, scale_bytes = v.groups * sizeof(typename Scheme::scale_type);
    token_head_bytes_ = code_bytes + scale_bytes + (Scheme::has_zero ? v.groups : 0);
    int slot = 0;
    const auto zeroed = [&](std::size_t bytes) {
      void* p = nullptr;
      LOWBIT_CUDA_CHECK(cudaMalloc(&p, std::max<std::size_t>(bytes, 1)));
      buffers_[slot++].reset(p);
      LOWBIT_CUDA_CHECK(cudaMemset(p, 0, std::max<std::size_t>(bytes, 1)));
      return p;
    };
    for (kv_rows_view* r : {&v.keys, &v.values}) {
      r->codes = static_cast<const uint8_t*>(zeroed(rows_ * code_bytes));
      r->scales = zeroed(rows_ * scale_bytes);
      r->zeros = Scheme::has_zero ? static_cast<const uint8_t*>(zeroed(rows_ * v.groups)) : nullptr;
    }
    v.lengths = static_cast<const int*>(zeroed(s.batch * sizeof(int)));
    v.tables = s.page_tokens ? static_cast<const uint32_t*>(zeroed(s.batch * width * sizeof(uint32_t))) : nullptr;
  }

  kv_view<Scheme> view_{};
  std::vector<std::size_t> capacities_;  ///< host: tokens each sequence can hold
  std::size_t pool_pages_ = 0, rows_ = 0, token_head_bytes_ = 0;
  detail::device_buffer buffers_[8];
};

/// Copies a CPU kv_cache (its current contents, lengths and block tables) to the current device.
/// Preconditions, checked: the scheme is supported (kv_scheme), head_dim is 64, 80, 96, 128 or 256, and
/// the group size a multiple of head_dim / 4 (each lane's share of a key and a value row lies in one group). The
/// device block tables are as wide as the longest mapped table; map_pages may remap within that.
template <class Scheme>
device_kv_cache<Scheme> upload(const attention::kv_cache<Scheme>& cache) {
  static_assert(kv_scheme<Scheme>::supported,
                "lowbit::cuda: KV schemes are int8 / uint8+zero / int4 / uint4+zero / fp8_e4m3 with float, fp16 or bf16 scales");
  const attention::kv_shape& s = cache.shape();
  const auto& km = cache.keys().matrix;
  const auto& vm = cache.values().matrix;
  const std::size_t d = s.head_dim, g = km.group_size();
  LOWBIT_CHECK(d == 64 || d == 80 || d == 96 || d == 128 || d == 256,
               "cuda::upload: head_dim=" << d << " (the GPU decode supports 64, 80, 96, 128 and 256)");
  LOWBIT_CHECK(g % (d / 4) == 0, "cuda::upload: group_size=" << g << " must be a multiple of head_dim / 4 = " << d / 4);
  LOWBIT_CHECK(km.rows() == vm.rows() && km.cols() == d,
               "cuda::upload: the keys are not stored one row per token (per-channel KIVI keys are not supported on the GPU)");
  LOWBIT_CHECK(km.rows() < (std::size_t(1) << 31), "cuda::upload: " << km.rows() << " rows are too many (< 2^31)");

  std::size_t width = 0;
  if (cache.paged()) {
    width = 1;
    for (std::size_t b = 0; b < s.batch; ++b) width = std::max(width, cache.capacity(b) / s.page_tokens);
  }
  device_kv_cache<Scheme> out;
  device_kv_cache<Scheme>::check_shape(s, g);
  out.allocate(s, g, width);
  kv_view<Scheme>& v = out.view_;
  // Contiguous: each (sequence, head)'s capacity rows copied to a block of v.capacity rows.
  const std::size_t blocks = cache.paged() ? 1 : s.batch * s.kv_heads;
  const std::size_t from_rows = cache.paged() ? km.rows() : s.capacity, to_rows = cache.paged() ? km.rows() : v.capacity;
  const auto spread = [&](const void* dst, const void* src, std::size_t row_size) {
    if (blocks == 1)
      LOWBIT_CUDA_CHECK(cudaMemcpy(const_cast<void*>(dst), src, from_rows * row_size, cudaMemcpyHostToDevice));
    else
      LOWBIT_CUDA_CHECK(cudaMemcpy2D(const_cast<void*>(dst), to_rows * row_size, src, from_rows * row_size,
                                     from_rows * row_size, blocks, cudaMemcpyHostToDevice));
  };
  const auto rows_to_device = [&](const quantized_matrix<Scheme>& m, const kv_rows_view& r) {
    spread(r.codes, m.codes(), m.row_bytes());
    spread(r.scales, m.scales(), m.groups_per_row() * sizeof(typename Scheme::scale_type));
    if constexpr (Scheme::has_zero) spread(r.zeros, m.zeros(), m.groups_per_row());
  };
  rows_to_device(km, v.keys);
  rows_to_device(vm, v.values);

  for (std::size_t b = 0; b < s.batch; ++b) {
    v.host_lengths[b] = static_cast<int>(cache.length(b));
    out.capacities_[b] = cache.capacity(b);
  }
  LOWBIT_CUDA_CHECK(cudaMemcpy(const_cast<int*>(v.lengths), v.host_lengths.data(), s.batch * sizeof(int), cudaMemcpyHostToDevice));
  if (cache.paged()) {
    std::vector<uint32_t> tables(s.batch * width, 0);
    for (std::size_t b = 0; b < s.batch; ++b)
      for (std::size_t p = 0; p * s.page_tokens < cache.capacity(b); ++p)
        tables[b * width + p] = static_cast<uint32_t>(cache.row(b, 0, p * s.page_tokens) / (s.kv_heads * s.page_tokens));
    LOWBIT_CUDA_CHECK(cudaMemcpy(const_cast<uint32_t*>(v.tables), tables.data(), tables.size() * sizeof(uint32_t),
                                 cudaMemcpyHostToDevice));
  }
  return out;
}

}  // namespace cuda
}  // namespace lowbit
