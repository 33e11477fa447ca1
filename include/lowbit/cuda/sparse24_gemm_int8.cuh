/// \file
/// \brief cuda::pack_sparse24_int8, cuda::quantize_int8_rows and cuda::gemm_sparse24_int8: W8A8 2:4 sparse GEMM
/// y = x · Wᵀ on the integer sparse tensor cores (mma.sp m16n8k64 .s8, int32 sums), for every M.
///
/// W: a 2:4 sparse24_matrix<scheme<int8, fp16>> with one scale a row (per channel). x: fp16 / bf16
/// rows quantized on the GPU per token (quantize_int8_rows: symmetric, scale = absmax / 127, codes
/// round-half-even in [-127, 127], the CPU int8_activations' arithmetic step for step), or int8
/// codes with per-token scales from the caller. y[t][r] = (float(sum_k q_x[t][k] q_w[r][k]) *
/// x_scale[t]) * w_scale[r], rounded once to fp16 / bf16; the int32 sum is exact (|sum| <= 127 *
/// 128 * K / 2 < 2^31 for K <= 2^18, checked), so the result is the integer reference's bit for bit.
///
/// GPU layout (pack_sparse24_int8; not the fp16 kernels' (sparse24_gemm.cuh): mma.sp .s8 takes 64
/// dense columns an mma, 32 kept bytes a row, in another fragment order). Rows in tiles of 16, K in
/// chunks of 128 dense columns (2 mmas); the last chunk padded past K with code 0 at positions 0, 1
/// (x's columns past K are copied as zeros). For mma j of a chunk, lane (g = lane / 4, t = lane % 4)
/// holds in register p, byte e the kept value 32 j + 4 t + 16 (p / 2) + e of row g + 8 (p % 2) (the
/// dense m16n8k32 .s8 A order on the kept values), and as metadata (sparsity selector 0: every
/// lane gives one word) the 8 groups of 4 dense columns 64 j + 32 (t / 2) .. + 32 of row
/// g + 8 (t % 2), group q in bits 4q .. 4q + 3 (its two positions, ordered; measured on an H100:
/// the 16-bit types' split, rows g and g + 8 in the two halves, is not this one's).
///  - one array [tiles][chunks][80] x 16 bytes: a tile's chunk is 64 vectors of codes ([2 mmas][32
///    lanes]) and 16 of metadata ([32 lanes] x 8 bytes: mma 0's word, then mma 1's), contiguous
///    so that a block streams long runs; scales [tiles * 16] floats (padding rows and columns: code 0,
///    positions 0 and 1; padding rows scale 0).
/// x's B fragment (64 x 8 of m16n8k64: register r of lane (g, t) holds k = 16 r + 4 t .. + 3 of
/// token g) is one ldmatrix.x4 of 8 token rows staged in shared memory (a row every 144 bytes:
/// conflict-free).
/// Kernel: a block computes rows x tokens of y (8 x 1 warps of 16 x 8 .. 16 for M <= 16, 4 x 2
/// warps of 32 x 16 / 32 for M <= 64, 4 x 2 warps of 64 x 64 above) over a split of K, weight and
/// x chunks through a cp.async ring; split K sums int32 partials (exact, in any order).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../sparse/sparse24_matrix.hpp"
#include "activation_types.cuh"
#include "dependent_launch.cuh"
#include "gemm_common.cuh"
#include "packed_weights.cuh"

namespace lowbit {
namespace cuda {

/// A borrowed W8A8 2:4 matrix (device pointers): what gemm_sparse24_int8 takes.
struct packed_sparse24_int8_view {
  const ::uint4* blocks = nullptr;    ///< [tiles][chunks][80] x 16 bytes: codes [2][32 lanes], metadata [32 lanes] x 8 bytes
  const float* scales = nullptr;      ///< [tiles * 16]: each row's scale
  std::size_t rows = 0, cols = 0;     ///< N, K (dense)
  std::size_t chunks = 0;             ///< ceil(K / 128)
  std::size_t tiles() const noexcept { return (rows + tile_rows - 1) / tile_rows; }
  /// Bytes one GEMM must read of the weights.
  std::size_t bytes() const noexcept { return tiles() * (chunks * 1280 + 64); }
};

/// Owns a packed W8A8 2:4 matrix on the device (move-only). Made by pack_sparse24_int8().
class packed_sparse24_int8 {
 public:
  packed_sparse24_int8_view view() const noexcept { return view_; }
  std::size_t bytes() const noexcept { return view_.bytes(); }
  template <class Scheme>
  friend packed_sparse24_int8 pack_sparse24_int8(const sparse24_matrix<Scheme>& w);

 private:
  packed_sparse24_int8_view view_{};
  detail::device_buffer blocks_, scales_;
};

/// Shuffles a 2:4 matrix of signed int8 kept values (scheme<int8, fp16>, no zero points) with
/// one scale a row into the layout above and uploads it. Any K (the last chunk is padded with
/// zeros). Checked (lowbit::error): the scheme, K <= 2^18 (the int32 sums' bound), per-channel
/// scales (group_size = the whole row of kept values).
template <class Scheme>
packed_sparse24_int8 pack_sparse24_int8(const sparse24_matrix<Scheme>& w) {
  if constexpr (!std::is_same<Scheme, scheme<int8, fp16>>::value) {
    raise_error("cuda::pack_sparse24_int8: kept values must be scheme<int8, fp16> (signed int8, fp16 scales, no zero "
                "points) for the s8 tensor cores");
    return {};
  } else {
    const std::size_t n = w.rows(), k = w.cols(), kept = w.kept_cols();
    LOWBIT_CHECK(n > 0 && k > 0, "cuda::pack_sparse24_int8: w is empty");
    LOWBIT_CHECK(w.group_size() == 0 || w.group_size() >= kept,
                 "cuda::pack_sparse24_int8: group_size " << w.group_size() << " (kept values): W8A8 takes one scale a row "
                                                         << "(group_size 0 or >= " << kept << ")");
    // |sum| <= 128 * 127 * K / 2 must fit int32: K <= 2^18.
    LOWBIT_CHECK(k <= (std::size_t(1) << 18) && n < (std::size_t(1) << 30),
                 "cuda::pack_sparse24_int8: " << n << " x " << k << " is too large (K <= 2^18 for exact int32 sums, N < 2^30)");
    packed_sparse24_int8 out;
    packed_sparse24_int8_view& pv = out.view_;
    pv.rows = n;
    pv.cols = k;
    pv.chunks = (k + 127) / 128;
    const std::size_t tiles = pv.tiles(), chunks = pv.chunks, groups = sparse24_positions::groups_of(k);
    const quantized_matrix<Scheme> kept_values = w.kept_values();
    const quantized_view<Scheme> v = kept_values.view();
    std::vector<uint32_t> blocks(tiles * chunks * 80 * 4, 0);
    std::vector<float> scales(tiles * tile_rows, 0.0f);
    for (std::size_t tile = 0; tile < tiles; ++tile)
      for (std::size_t c = 0; c < chunks; ++c)
        for (std::size_t j = 0; j < 2; ++j)
          for (std::size_t lane = 0; lane < 32; ++lane) {
            const std::size_t g = lane / 4, t = lane % 4;
            uint32_t* block = blocks.data() + (tile * chunks + c) * 80 * 4;
            uint32_t* a = block + (j * 32 + lane) * 4;
            for (std::size_t p = 0; p < 4; ++p)
              for (std::size_t e = 0; e < 4; ++e) {
                const std::size_t row = tile * tile_rows + g + 8 * (p % 2), at = c * 64 + 32 * j + 4 * t + 16 * (p / 2) + e;
                if (row < n && at < kept) a[p] |= uint32_t(v.code(row, at)) << (8 * e);  // two's complement byte, as .s8 wants
              }
            uint32_t word = 0;
            for (std::size_t q = 0; q < 8; ++q) {
              const std::size_t row = tile * tile_rows + g + 8 * (t % 2), grp = c * 32 + 16 * j + 8 * (t / 2) + q;
              // Padding rows and columns: positions 0, 1 (the metadata must name two distinct positions).
              const unsigned nibble =
                  row < n && grp < groups ? (w.position(row, 2 * grp) | (w.position(row, 2 * grp + 1) << 2)) : 0x4u;
              word |= uint32_t(nibble) << (4 * q);
            }
            block[64 * 4 + lane * 2 + j] = word;
          }
    for (std::size_t row = 0; row < n; ++row) scales[row] = static_cast<float>(v.row_scales(row)[0]);
    out.blocks_ = detail::upload(blocks.data(), blocks.size() * 4);
    out.scales_ = detail::upload(scales.data(), scales.size() * 4);
    pv.blocks = static_cast<const ::uint4*>(out.blocks_.get());
    pv.scales = static_cast<const float*>(out.scales_.get());
    return out;
  }
}

/// Device scratch for the int8 activations of gemm_sparse24_int8 (codes and per-token scales);
/// grows on demand. Without one, each call takes its scratch from cudaMallocAsync.
class int8_rows_buffer {
 public:
  void reserve(std::size_t rows, std::size_t cols) {
    const std::size_t code_bytes = (rows * cols + 255) / 256 * 256, bytes = code_bytes + rows * sizeof(float);
    if (bytes > bytes_ || code_bytes > code_bytes_) {
      buffer_.reset();
      void* p = nullptr;
      LOWBIT_CUDA_CHECK(cudaMalloc(&p, bytes));
      buffer_.reset(p);
      bytes_ = bytes;
    }
    code_bytes_ = code_bytes;
  }
  int8_t* codes() const noexcept { return static_cast<int8_t*>(buffer_.get()); }
  float* scales() const noexcept { return reinterpret_cast<float*>(static_cast<char*>(buffer_.get()) + code_bytes_); }

 private:
  detail::device_buffer buffer_;
  std::size_t bytes_ = 0, code_bytes_ = 0;
};

namespace detail {

/// D += A(2:4, 16 x 64 int8) · B(64 x 8 int8), int32 sums; metadata from every lane (selector 0).
__device__ __forceinline__ void mma_sp_16864_s8(int (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t meta) {
  asm("mma.sp::ordered_metadata.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(meta));
}

/// One block a row: q = clamp(rint(x * (1 / (amax / 127))), -127, 127), as int8_activations does
/// it (the same float operations, each rounded to nearest: __fdiv_rn / __fmul_rn, so that no fast
/// math or contraction changes them; NaN gives a NaN scale and codes -127, as there). x rows 16-byte
/// aligned, k % 8 == 0. Keep: 16-byte vectors of x a thread keeps in registers between the two
/// passes (k <= 2048 Keep); 0: the second pass reads the row again.
template <class T, int Keep>
__global__ void __launch_bounds__(256) quantize_int8_rows_kernel(const T* __restrict__ x, int ldx, int k,
                                                                 int8_t* __restrict__ q, int ldq, float* __restrict__ scales) {
  grid_dependents_launch();  // the GEMM may start (it copies its first weight stages, then waits for these codes)
  const ::uint4* row = reinterpret_cast<const ::uint4*>(x + (size_t)blockIdx.x * ldx);
  const int vecs = k / 8;
  uint32_t amax_bits = 0;
  const auto absmax = [&](const ::uint4& v) {
    const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int j = 0; j < 8; ++j) amax_bits = max(amax_bits, __float_as_uint(to_float(e[j])) & 0x7FFFFFFFu);
  };
  ::uint4 kept[Keep > 0 ? Keep : 1];
  if constexpr (Keep > 0) {
#pragma unroll
    for (int u = 0; u < Keep; ++u) {
      const int i = threadIdx.x + u * 256;
      kept[u] = i < vecs ? row[i] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < Keep; ++u) absmax(kept[u]);
  } else {
#pragma unroll 4
    for (int i = threadIdx.x; i < vecs; i += 256) absmax(row[i]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax_bits = max(amax_bits, __shfl_xor_sync(0xFFFFFFFFu, amax_bits, o));
  __shared__ uint32_t warp_max[8];
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = amax_bits;
  __syncthreads();
  amax_bits = warp_max[0];
#pragma unroll
  for (int w = 1; w < 8; ++w) amax_bits = max(amax_bits, warp_max[w]);
  const float amax = __uint_as_float(amax_bits);
  const float scale = amax > 0.0f ? __fdiv_rn(amax, 127.0f) : 1.0f, inverse = __fdiv_rn(1.0f, scale);
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
  ::uint2* out = reinterpret_cast<::uint2*>(q + (size_t)blockIdx.x * ldq);
  const auto quantize = [&](const ::uint4& v) {
    const T* e = reinterpret_cast<const T*>(&v);
    uint32_t word[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float r = rintf(__fmul_rn(to_float(e[j]), inverse));
      r = r > 127.0f ? 127.0f : r;
      r = r >= -127.0f ? r : -127.0f;  // NaN: -127
      word[j / 4] |= (uint32_t(int(r)) & 0xFFu) << (8 * (j % 4));
    }
    return make_uint2(word[0], word[1]);
  };
  if constexpr (Keep > 0) {
#pragma unroll
    for (int u = 0; u < Keep; ++u) {
      const int i = threadIdx.x + u * 256;
      if (i < vecs) out[i] = quantize(kept[u]);
    }
  } else {
#pragma unroll 4
    for (int i = threadIdx.x; i < vecs; i += 256) out[i] = quantize(row[i]);
  }
}

/// A block: WarpsN x WarpsM warps, each TW tiles of 16 rows x MW tiles of 8 tokens; Stages chunks in the ring.
template <int WarpsN, int WarpsM, int TW, int MW, int Stages, int MinBlocks = 1>
struct sparse24_int8_config {
  static constexpr int warps_n = WarpsN, warps_m = WarpsM, tw = TW, mw = MW, stages = Stages, min_blocks = MinBlocks;
  static constexpr int warps = WarpsN * WarpsM, threads = 32 * warps;
  static constexpr int tiles = TW * WarpsN, rows = 16 * tiles, tokens = 8 * MW * WarpsM;
  static constexpr int tile_vecs = 80;  ///< a tile's chunk: 64 vectors of codes, 16 of metadata
  static constexpr int x_row_vecs = 9;  ///< 128 bytes of a token's chunk and 16 of padding (conflict-free ldmatrix)
  static constexpr int w_vecs = tiles * tile_vecs, stage_vecs = w_vecs + tokens * x_row_vecs;
  static constexpr unsigned smem_bytes = Stages * stage_vecs * 16u;
  static constexpr int partial_ints = warps * MW * TW * 4 * 32;  ///< split-K partials a block
};

template <class C, class T>
__global__ void __launch_bounds__(C::threads, C::min_blocks)
    sparse24_int8_kernel(const int8_t* __restrict__ xq, const float* __restrict__ x_scales, int m, int k, int ldq,
                         const ::uint4* __restrict__ blocks, const float* __restrict__ w_scales, int n, int tiles, int chunks,
                         int blocks_n, int blocks_m, int split_chunks,
                         int* __restrict__ partials, unsigned* __restrict__ counters, T* __restrict__ y, int ldy) {
  constexpr int TW = C::tw, MW = C::mw;
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wn = warp % C::warps_n, wm = warp / C::warps_n;
  // Output block (bn, bm) of blockIdx.x: in groups of 8 row blocks, the token blocks of a group
  // before the next group, so that the blocks running at a time share their weights and x in L2.
  const int group = blockIdx.x / (8 * blocks_m), first_bn = group * 8, group_n = min(8, blocks_n - first_bn);
  const int within = blockIdx.x - group * 8 * blocks_m, bn = first_bn + within % group_n, bm = within / group_n;
  const int tile0 = bn * C::tiles, token0 = bm * C::tokens;
  const int c0 = blockIdx.y * split_chunks, steps = min(chunks - c0, split_chunks);
  // The weights: read once (evict first) where one block of tokens covers x; else kept for the other token blocks.
  const uint64_t read_once = blocks_m == 1 ? l2_evict_first() : l2_evict_normal();
  const auto issue_w = [&](int step) {
    if (step < steps) {
      ::uint4* stage = smem + (step % C::stages) * C::stage_vecs;
      for (int i = threadIdx.x; i < C::w_vecs; i += C::threads) {
        const int tl = i / C::tile_vecs, v = i % C::tile_vecs;
        const size_t tile = static_cast<size_t>(min(tile0 + tl, tiles - 1));
        cp_async16_hint(stage + i, blocks + (tile * chunks + c0 + step) * C::tile_vecs + v, read_once);
      }
    }
  };
  const auto issue_x = [&](int step) {
    if (step < steps) {
      ::uint4* stage = smem + (step % C::stages) * C::stage_vecs;
      for (int i = threadIdx.x; i < C::tokens * 8; i += C::threads) {
        const int r = i >> 3, piece = i & 7, token = min(token0 + r, m - 1);  // past m: a copy of row m - 1 (never stored)
        const int col = (c0 + step) * 128 + piece * 16;
        const int8_t* src = xq + (size_t)token * ldq + col;
        if (col + 16 <= k) cp_async16(stage + C::w_vecs + r * C::x_row_vecs + piece, src);
        else cp_async16_fill(stage + C::w_vecs + r * C::x_row_vecs + piece, col < k ? src : xq, max(0, k - col));  // zeros past K
      }
    }
  };
  // ldmatrix row of this lane: token (wm * MW + mt) * 8 + lane % 8, bytes 16 (lane / 8) .. of mma 0 (mma 1: + 64).
  const unsigned ring = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const unsigned x_at = ring + (C::w_vecs + (wm * MW * 8 + (lane & 7)) * C::x_row_vecs + (lane >> 3)) * 16;

  // The ring's first stages: all their weights, then (once the codes of x are there) x, one group a
  // stage; the first group also holds every first-stage weight (groups complete in order).
#pragma unroll
  for (int s = 0; s < C::stages - 1; ++s) issue_w(s);
  grid_dependency_wait();
#pragma unroll
  for (int s = 0; s < C::stages - 1; ++s) {
    issue_x(s);
    cp_async_commit();
  }
  int acc[MW][TW][4] = {};
  for (int step = 0; step < steps; ++step) {
    cp_async_wait<C::stages - 2>();
    __syncthreads();  // the stage came from every thread; and all are done with the stage refilled next
    issue_w(step + C::stages - 1);
    issue_x(step + C::stages - 1);
    cp_async_commit();  // always a group (empty past the end)
    const int slot = step % C::stages;
    const ::uint4* w_stage = smem + slot * C::stage_vecs + wn * TW * C::tile_vecs;
    ::uint2 meta[TW];
#pragma unroll
    for (int tl = 0; tl < TW; ++tl) meta[tl] = reinterpret_cast<const ::uint2*>(w_stage + tl * C::tile_vecs + 64)[lane];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      uint32_t a[TW][4];
#pragma unroll
      for (int tl = 0; tl < TW; ++tl) {
        const ::uint4 v = w_stage[tl * C::tile_vecs + j * 32 + lane];
        a[tl][0] = v.x, a[tl][1] = v.y, a[tl][2] = v.z, a[tl][3] = v.w;
      }
#pragma unroll
      for (int mt = 0; mt < MW; ++mt) {
        uint32_t b[4];
        ldmatrix_x4(b, x_at + slot * C::stage_vecs * 16 + mt * 8 * C::x_row_vecs * 16 + 64 * j);
#pragma unroll
        for (int tl = 0; tl < TW; ++tl) mma_sp_16864_s8(acc[mt][tl], a[tl], b, j ? meta[tl].y : meta[tl].x);
      }
    }
  }
  cp_async_wait<0>();

  // Output (row, token) of sum i of mma tile (mt, tl): rows g, g + 8; tokens 2t, 2t + 1.
  const int g = lane >> 2, t = lane & 3, split = blockIdx.y, splits = gridDim.y;
  const auto store = [&](int mt, int tl, int i, int sum) {
    const int row = (tile0 + wn * TW + tl) * 16 + g + 8 * (i >> 1), token = token0 + (wm * MW + mt) * 8 + 2 * t + (i & 1);
    if (row < n && token < m) {
      const float v = __fmul_rn(__fmul_rn(static_cast<float>(sum), x_scales[token]), w_scales[row]);
      if constexpr (is_bf16<T>) y[(size_t)token * ldy + row] = __float2bfloat16_rn(v);
      else y[(size_t)token * ldy + row] = __float2half_rn(v);
    }
  };
  if (splits > 1) {
    // Split K: int32 partials to [block][split][warp][value][lane]; the split set's last block adds
    // them (exact in any order) and stores.
    constexpr int values = MW * TW * 4;
    const size_t block = blockIdx.x;
    const auto slot = [&](int s) { return partials + ((block * splits + s) * C::warps + warp) * values * 32 + lane; };
    int* mine = slot(split);
#pragma unroll
    for (int mt = 0; mt < MW; ++mt)
#pragma unroll
      for (int tl = 0; tl < TW; ++tl)
#pragma unroll
        for (int i = 0; i < 4; ++i) mine[((mt * TW + tl) * 4 + i) * 32] = acc[mt][tl][i];
    if (!last_of_split_set(counters, splits)) return;
    for (int s = 0; s < splits; ++s) {
      if (s == split) continue;
      const int* other = slot(s);
#pragma unroll
      for (int mt = 0; mt < MW; ++mt)
#pragma unroll
        for (int tl = 0; tl < TW; ++tl)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[mt][tl][i] += __ldcg(other + ((mt * TW + tl) * 4 + i) * 32);
    }
  }
#pragma unroll
  for (int mt = 0; mt < MW; ++mt)
#pragma unroll
    for (int tl = 0; tl < TW; ++tl)
#pragma unroll
      for (int i = 0; i < 4; ++i) store(mt, tl, i, acc[mt][tl][i]);
}

/// The block shapes (see the file comment); blocks_per_sm: the split of K aims at that many blocks an SM.
using sparse24_int8_m8 = sparse24_int8_config<8, 1, 1, 1, 6, 2>;
using sparse24_int8_m16 = sparse24_int8_config<8, 1, 1, 2, 8, 1>;
using sparse24_int8_m32 = sparse24_int8_config<4, 2, 2, 2, 4, 2>;
using sparse24_int8_m64 = sparse24_int8_config<4, 2, 2, 4, 4, 2>;
using sparse24_int8_large = sparse24_int8_config<4, 2, 4, 8, 4, 1>;

template <class C, class T>
void launch_sparse24_int8(const int8_t* xq, const float* x_scales, int m, int ldq, const packed_sparse24_int8_view& w,
                          T* y, int ldy, cudaStream_t stream, const gemm_options& options, bool after_quantizer = false) {
  const int n = static_cast<int>(w.rows), chunks = static_cast<int>(w.chunks);
  const int blocks_n = (n + C::rows - 1) / C::rows, blocks_m = (m + C::tokens - 1) / C::tokens;
  LOWBIT_CHECK(static_cast<long long>(blocks_n) * blocks_m < (1ll << 31),
               "cuda::gemm_sparse24_int8: " << blocks_n << " x " << blocks_m << " output blocks exceed the grid's 2^31 - 1");
  // Split K where the output blocks are fewer than about C::min_blocks an SM (or as options.split_k says).
  const int blocks = blocks_n * blocks_m;
  gemm_options o = options;
  if (o.split_k == 0 && blocks >= C::min_blocks * sm_count()) o.split_k = 1;
  const wide_split split("cuda::gemm_sparse24_int8", chunks, blocks, C::min_blocks, C::partial_ints, o, stream);
  constexpr auto kernel = sparse24_int8_kernel<C, T>;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(C::smem_bytes)));
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(blocks_n * blocks_m, split.splits);
  config.blockDim = dim3(C::threads);
  config.dynamicSmemBytes = C::smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute overlap[1];
  overlap[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap[0].val.programmaticStreamSerializationAllowed = 1;
  // After the quantizer (its grid small enough not to be crowded out by waiting GEMM blocks): its
  // dependent, copying weights while it runs.
  if (after_quantizer && m <= 64) {
    config.attrs = overlap;
    config.numAttrs = 1;
  }
  LOWBIT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, xq, x_scales, m, static_cast<int>(w.cols), ldq, static_cast<const ::uint4*>(w.blocks),
                                       static_cast<const float*>(w.scales), n, static_cast<int>(w.tiles()), chunks, blocks_n,
                                       blocks_m, split.split_chunks, reinterpret_cast<int*>(split.partials), split.counters, y,
                                       ldy));
}

template <class T>
void check_int8_output(std::size_t m, const packed_sparse24_int8_view& w, const T* y, std::size_t ldy) {
  static_assert(std::is_same<T, __half>::value || is_bf16<T>, "cuda::gemm_sparse24_int8: fp16 (__half) or bf16 (__nv_bfloat16) output");
  LOWBIT_CHECK(m >= 1 && m <= (std::size_t(1) << 24), "cuda::gemm_sparse24_int8: m=" << m << " must be in [1, 2^24]");
  LOWBIT_CHECK(w.blocks != nullptr, "cuda::gemm_sparse24_int8: the packed weights are empty");
  LOWBIT_CHECK(y != nullptr && ldy >= w.rows, "cuda::gemm_sparse24_int8: ldy=" << ldy << " must be >= N=" << w.rows);
}

}  // namespace detail

/// Quantizes m rows of x (k columns, fp16 or bf16) to int8 per row on `stream`: q[i][c] (row
/// stride ldq) and scales[i], as lowbit::int8_activations::quantize does on the CPU (bit for bit,
/// for the same float values). Checked: x 16-byte aligned, ldx % 8 == 0, k % 8 == 0, ldq >= k.
template <class T>
void quantize_int8_rows(const T* x, std::size_t m, std::size_t ldx, std::size_t k, int8_t* q, std::size_t ldq, float* scales,
                        cudaStream_t stream = nullptr) {
  static_assert(std::is_same<T, __half>::value || detail::is_bf16<T>, "cuda::quantize_int8_rows: fp16 or bf16 x");
  LOWBIT_CHECK(m >= 1 && m <= (std::size_t(1) << 24), "cuda::quantize_int8_rows: m=" << m << " must be in [1, 2^24]");
  LOWBIT_CHECK(k >= 8 && k % 8 == 0 && k < (std::size_t(1) << 30), "cuda::quantize_int8_rows: k=" << k << " must be a positive multiple of 8");
  LOWBIT_CHECK(ldx >= k && ldx % 8 == 0, "cuda::quantize_int8_rows: ldx=" << ldx << " must be >= k=" << k << " and a multiple of 8");
  LOWBIT_CHECK(x != nullptr && reinterpret_cast<std::uintptr_t>(x) % 16 == 0, "cuda::quantize_int8_rows: x must be non-null and 16-byte aligned");
  LOWBIT_CHECK(q != nullptr && ldq >= k && ldq % 8 == 0 && reinterpret_cast<std::uintptr_t>(q) % 8 == 0,
               "cuda::quantize_int8_rows: q must be non-null and 8-byte aligned with ldq (" << ldq << ") >= k and a multiple of 8");
  LOWBIT_CHECK(scales != nullptr, "cuda::quantize_int8_rows: scales is null");
  const auto launch = [&](auto kernel) {
    kernel<<<static_cast<unsigned>(m), 256, 0, stream>>>(x, static_cast<int>(ldx), static_cast<int>(k), q, static_cast<int>(ldq), scales);
  };
  const std::size_t vecs = k / 8;  // per thread: 1, 2, 4 or 8 kept in registers, else read twice
  if (vecs <= 256) launch(detail::quantize_int8_rows_kernel<T, 1>);
  else if (vecs <= 512) launch(detail::quantize_int8_rows_kernel<T, 2>);
  else if (vecs <= 1024) launch(detail::quantize_int8_rows_kernel<T, 4>);
  else if (vecs <= 2048) launch(detail::quantize_int8_rows_kernel<T, 8>);
  else launch(detail::quantize_int8_rows_kernel<T, 0>);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

namespace detail {
template <class T>
void gemm_sparse24_int8_codes(const int8_t* xq, const float* x_scales, std::size_t m, std::size_t ldq,
                              const packed_sparse24_int8_view& w, T* y, std::size_t ldy, cudaStream_t stream,
                              const gemm_options& options, bool after_quantizer);
}  // namespace detail

/// y[m x N] = x · Wᵀ from int8 activations: xq (m rows of K codes, row stride ldq; nothing past K
/// is read) with per-row scales x_scales, W packed by pack_sparse24_int8, y fp16 or bf16 (T), on
/// `stream` (asynchronous). Checked: 1 <= m <= 2^24, xq 16-byte aligned with ldq >= K and
/// ldq % 16 == 0, ldy >= N.
/// options.split_k: blocks along K (0: where the output blocks are fewer than the SMs);
/// options.workspace as for cuda::gemm.
template <class T>
void gemm_sparse24_int8_quantized(const int8_t* xq, const float* x_scales, std::size_t m, std::size_t ldq,
                                  const packed_sparse24_int8_view& w, T* y, std::size_t ldy, cudaStream_t stream = nullptr,
                                  const gemm_options& options = {}) {
  detail::gemm_sparse24_int8_codes(xq, x_scales, m, ldq, w, y, ldy, stream, options, false);
}

namespace detail {
template <class T>
void gemm_sparse24_int8_codes(const int8_t* xq, const float* x_scales, std::size_t m, std::size_t ldq,
                              const packed_sparse24_int8_view& w, T* y, std::size_t ldy, cudaStream_t stream,
                              const gemm_options& options, bool after_quantizer) {
  detail::check_int8_output(m, w, y, ldy);
  LOWBIT_CHECK(ldq >= w.cols && ldq % 16 == 0 && ldq < (std::size_t(1) << 31),
               "cuda::gemm_sparse24_int8: ldq=" << ldq << " must be >= K=" << w.cols << " and a multiple of 16");
  LOWBIT_CHECK(xq != nullptr && reinterpret_cast<std::uintptr_t>(xq) % 16 == 0, "cuda::gemm_sparse24_int8: xq must be 16-byte aligned");
  LOWBIT_CHECK(x_scales != nullptr, "cuda::gemm_sparse24_int8: x_scales is null");
  const int mi = static_cast<int>(m), lq = static_cast<int>(ldq), ly = static_cast<int>(ldy);
  const bool a = after_quantizer;
  if (m <= 8) launch_sparse24_int8<sparse24_int8_m8>(xq, x_scales, mi, lq, w, y, ly, stream, options, a);
  else if (m <= 16) launch_sparse24_int8<sparse24_int8_m16>(xq, x_scales, mi, lq, w, y, ly, stream, options, a);
  else if (m <= 32) launch_sparse24_int8<sparse24_int8_m32>(xq, x_scales, mi, lq, w, y, ly, stream, options, a);
  else if (m <= 64) launch_sparse24_int8<sparse24_int8_m64>(xq, x_scales, mi, lq, w, y, ly, stream, options, a);
  else launch_sparse24_int8<sparse24_int8_large>(xq, x_scales, mi, lq, w, y, ly, stream, options, a);
}
}  // namespace detail

/// y[m x N] = x · Wᵀ, W8A8: x (fp16 or bf16, m x K, row stride ldx) quantized per row to int8 on
/// the GPU (quantize_int8_rows) into `activations` (or cudaMallocAsync scratch when null), then
/// gemm_sparse24_int8_quantized. Checked: as both (so K % 8 == 0 here).
template <class T>
void gemm_sparse24_int8(const T* x, std::size_t m, std::size_t ldx, const packed_sparse24_int8_view& w, T* y, std::size_t ldy,
                        cudaStream_t stream = nullptr, const gemm_options& options = {}, int8_rows_buffer* activations = nullptr) {
  detail::check_int8_output(m, w, y, ldy);
  LOWBIT_CHECK(w.cols % 8 == 0, "cuda::gemm_sparse24_int8: K=" << w.cols << " must be a multiple of 8 to quantize x on the GPU "
                                << "(gemm_sparse24_int8_quantized takes any K)");
  const std::size_t k = w.cols, ldq = (k + 15) / 16 * 16, code_bytes = (m * ldq + 255) / 256 * 256;
  int8_t* q = nullptr;
  float* scales = nullptr;
  void* scratch = nullptr;
  if (activations) {
    activations->reserve(m, ldq);
    q = activations->codes();
    scales = activations->scales();
  } else {
    LOWBIT_CUDA_CHECK(cudaMallocAsync(&scratch, code_bytes + m * sizeof(float), stream));
    q = static_cast<int8_t*>(scratch);
    scales = reinterpret_cast<float*>(static_cast<char*>(scratch) + code_bytes);
  }
  struct give_back {  // the scratch, in stream order, also on a throw
    void* p;
    cudaStream_t s;
    ~give_back() { if (p) cudaFreeAsync(p, s); }
  } scratch_owner{scratch, stream};
  quantize_int8_rows(x, m, ldx, k, q, ldq, scales, stream);
  detail::gemm_sparse24_int8_codes(q, scales, m, ldq, w, y, ldy, stream, options, true);
}

}  // namespace cuda
}  // namespace lowbit
