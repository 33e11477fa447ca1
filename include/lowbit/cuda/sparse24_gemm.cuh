/// \file
/// \brief cuda::pack_sparse24 and cuda::gemm_sparse24: 2:4 sparse + 4-bit integer weight-only GEMM
/// y = x · Wᵀ for small M (1..16), fp16 activations, on the sparse tensor cores (mma.sp).
///
/// The Sparse-Marlin idea on top of the dense kernel (gemm.cuh): W's tile of 16 rows is the sparse
/// operand A of mma.sp.m16n8k32 (16 x 32 dense = 16 x 16 kept values), xᵀ its B (32 x 8); the kept
/// values are int4 codes dequantized in registers (the dense kernel's magic-number dequant), the
/// 2-bit positions are the mma's metadata, so a 2:4 matrix streams half the codes of a dense one
/// plus 1 bit per dense weight of metadata.
///
/// GPU layout (made once on the host by pack_sparse24). Rows are cut into tiles of 16, K into
/// chunks of 128 dense columns (64 kept values per row, 4 mma.sp of 32 columns each):
///  - codes [tiles][chunks][32 lanes] x 16 bytes: lane (g = lane / 4, t = lane % 4) word i feeds
///    mma i (dense columns 32 i .. 32 i + 32 of the chunk) with the A fragment of m16n8k32: kept
///    values 16 i + 2t + 8h + e (h, e in 0..1) of rows g (register 2h) and g + 8 (register 2h + 1),
///    at the nibbles where detail::dequant<4, integer> wants them (nibble p + 4e of register p).
///  - metadata [tiles][chunks][16 entries] x 16 bytes: entry 2g + s (s = 0, 1: the two lanes
///    4g + s that hold metadata with sparsity selector 0) word i: for mma i, the 4-bit nibbles of
///    the groups of 4 columns 16 s .. 16 s + 16 of that mma, row g in bits 0..15 and row g + 8 in
///    bits 16..31 (group j of the 4 in bits 4j .. 4j + 3; first kept position in the low 2 bits).
///  - scales [tiles][groups][16 rows]: half2(scale, 1024 + zero), as the dense layout.
/// The activations are read as the B fragment wants them (4-byte pairs of k; B of m16n8k32 holds
/// rows 2t, 2t + 1 + 8 r): a 2:4 group's 4 columns are split over two lanes, so they cannot be read as
/// 16-byte vectors like the dense kernel's.
/// Preconditions: K % 128 == 0, group size (in kept values) a multiple of 64 or the whole row.
/// Numerics: as the dense int4 kernel (gemm.cuh): weights exact in fp16, fp32 sums, fp16 output.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../sparse/sparse24_matrix.hpp"
#include "gemm.cuh"
#include "packed_weights.cuh"

namespace lowbit {
namespace cuda {

inline constexpr std::size_t sparse24_chunk_cols = 128;  ///< dense K per chunk (64 kept values a row)

/// A borrowed packed 2:4 matrix (device pointers): what gemm_sparse24 takes.
template <class Scheme>
struct packed_sparse24_view {
  const ::uint4* codes = nullptr;     ///< [tiles][chunks][32 lanes] x 16 bytes
  const ::uint4* metadata = nullptr;  ///< [tiles][chunks][16] x 16 bytes
  const uint32_t* scales = nullptr;   ///< [tiles][groups][16 rows]
  std::size_t rows = 0, cols = 0;     ///< N, K (dense)
  std::size_t chunks = 0, chunks_per_group = 0, groups = 0;
  std::size_t tiles() const noexcept { return (rows + tile_rows - 1) / tile_rows; }
  /// Bytes one GEMM must read of the weights.
  std::size_t bytes() const noexcept { return tiles() * (chunks * (512 + 256) + groups * tile_rows * 4); }
};

/// Owns a packed 2:4 matrix on the device (move-only). Made by pack_sparse24().
template <class Scheme>
class packed_sparse24 {
 public:
  packed_sparse24_view<Scheme> view() const noexcept { return view_; }
  std::size_t bytes() const noexcept { return view_.bytes(); }
  template <class S>
  friend packed_sparse24<S> pack_sparse24(const sparse24_matrix<S>& w);

 private:
  packed_sparse24_view<Scheme> view_{};
  detail::device_buffer codes_, metadata_, scales_;
};

/// Shuffles a 2:4 matrix of 4-bit integer kept values (fp16 scales) into the GPU layout and uploads it.
/// Checked: K % 128 == 0; group size (kept values) a multiple of 64 or the whole row.
template <class Scheme>
packed_sparse24<Scheme> pack_sparse24(const sparse24_matrix<Scheme>& w) {
  using gs = gpu_scheme<Scheme>;
  static_assert(gs::supported && gs::is_integer && Scheme::bits == 4,
                "lowbit::cuda::pack_sparse24: 4-bit integer kept values with fp16 scales");
  const std::size_t n = w.rows(), k = w.cols(), kept = w.kept_cols(), g = w.group_size();
  LOWBIT_CHECK(k % sparse24_chunk_cols == 0, "cuda::pack_sparse24: K=" << k << " must be a multiple of 128");
  LOWBIT_CHECK(g % 64 == 0 || g >= kept,
               "cuda::pack_sparse24: group_size " << g << " (kept values) must be a multiple of 64 or the whole row");
  LOWBIT_CHECK(k < (std::size_t(1) << 22) && n < (std::size_t(1) << 30), "cuda::pack_sparse24: " << n << " x " << k << " is too large");
  const quantized_matrix<Scheme> values = w.kept_values();
  const quantized_view<Scheme> v = values.view();
  packed_sparse24<Scheme> out;
  packed_sparse24_view<Scheme>& pv = out.view_;
  pv.rows = n;
  pv.cols = k;
  pv.chunks = k / sparse24_chunk_cols;
  pv.chunks_per_group = g >= kept ? pv.chunks : g / 64;
  pv.groups = v.groups_per_row();
  const std::size_t tiles = pv.tiles();

  std::vector<uint32_t> codes(tiles * pv.chunks * 32 * 4, 0), meta(tiles * pv.chunks * 16 * 4, 0);
  for (std::size_t tile = 0; tile < tiles; ++tile)
    for (std::size_t c = 0; c < pv.chunks; ++c) {
      uint32_t* block = codes.data() + (tile * pv.chunks + c) * 128;
      uint32_t* mblock = meta.data() + (tile * pv.chunks + c) * 64;
      for (std::size_t lane = 0; lane < 32; ++lane)
        for (std::size_t i = 0; i < 4; ++i)
          for (std::size_t p = 0; p < 4; ++p)
            for (std::size_t e = 0; e < 2; ++e) {
              const std::size_t row = tile * tile_rows + lane / 4 + 8 * (p % 2);
              const std::size_t j = c * 64 + 16 * i + 2 * (lane % 4) + 8 * (p / 2) + e;
              // Padding rows keep code 0 (a finite value times a zero scale).
              if (row < n) block[lane * 4 + i] |= uint32_t(gs::bias_code(v.code(row, j))) << (4 * (p + 4 * e));
            }
      for (std::size_t entry = 0; entry < 16; ++entry)
        for (std::size_t i = 0; i < 4; ++i) {
          uint32_t word = 0;
          for (std::size_t half = 0; half < 2; ++half)
            for (std::size_t q = 0; q < 4; ++q) {
              const std::size_t row = tile * tile_rows + entry / 2 + 8 * half;
              // Group of 4 dense columns: chunk c, mma i, the lane's half s = entry % 2, group q of 4.
              const std::size_t grp = c * 32 + 8 * i + 4 * (entry % 2) + q;
              // Padding rows: positions 0, 1 (the metadata must name two distinct positions).
              const unsigned nibble = row < n ? (w.position(row, 2 * grp) | (w.position(row, 2 * grp + 1) << 2)) : 0x4u;
              word |= uint32_t(nibble) << (16 * half + 4 * q);
            }
          mblock[entry * 4 + i] = word;
        }
    }
  std::vector<uint32_t> scales(tiles * pv.groups * tile_rows, 0);
  for (std::size_t row = 0; row < n; ++row)
    for (std::size_t grp = 0; grp < pv.groups; ++grp) {
      const uint16_t scale = v.row_scales(row)[grp].bits;
      unsigned zero = gs::bias_code(0);
      if constexpr (Scheme::has_zero) zero = gs::bias_code(v.row_zeros(row)[grp]);
      const uint16_t bias = fp16(1024.0f + static_cast<float>(zero)).bits;
      scales[((row / tile_rows) * pv.groups + grp) * tile_rows + row % tile_rows] = scale | (uint32_t(bias) << 16);
    }
  out.codes_ = detail::upload(codes.data(), codes.size() * 4);
  out.metadata_ = detail::upload(meta.data(), meta.size() * 4);
  out.scales_ = detail::upload(scales.data(), scales.size() * 4);
  pv.codes = static_cast<const ::uint4*>(out.codes_.get());
  pv.metadata = static_cast<const ::uint4*>(out.metadata_.get());
  pv.scales = static_cast<const uint32_t*>(out.scales_.get());
  return out;
}

namespace detail {

/// D += A(2:4, 16 x 32) · B(32 x 8), fp16 in, fp32 accumulate; metadata from the lanes 4g, 4g + 1
/// (ordered_metadata: the two positions of a group in increasing order, as sparse24_matrix keeps them).
__device__ __forceinline__ void mma_sp_16832(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t meta) {
  asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, "
      "{%0, %1, %2, %3}, %12, 0x0;"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(meta));
}

inline constexpr int sparse24_tile_vecs = 32 + 16 + 4;  // a tile's stage: codes, metadata, 16 scale words

/// One block: Tiles tiles of 16 rows; its Warps warps split K into ranges of 128-wide chunks, each
/// streaming its tiles' codes, metadata and scales through a private ring of Stages stages
/// (cp.async). The activations of a chunk are loaded once and used for the Tiles tiles.
template <int MTiles, int Tiles, int Stages, int Warps>
__global__ void __launch_bounds__(Warps * 32)
    sparse24_gemm_kernel(const __half* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                         const ::uint4* __restrict__ metadata, const uint32_t* __restrict__ scales, int n, int chunks,
                         int chunks_per_group, int groups, __half* __restrict__ y, int ldy) {
  constexpr int stage_vecs = Tiles * sparse24_tile_vecs;
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int tile0 = blockIdx.x * Tiles;
  ::uint4* ring = smem + warp * Stages * stage_vecs;
  const int c_begin = warp * chunks / Warps, c_end = (warp + 1) * chunks / Warps, steps = c_end - c_begin;
  const ::uint4* code_ptr = codes + ((size_t)tile0 * chunks + c_begin) * 32 + lane;
  const ::uint4* meta_ptr = metadata + ((size_t)tile0 * chunks + c_begin) * 16 + (lane & 15);
  const ::uint4* scale_ptr = reinterpret_cast<const ::uint4*>(scales) + (size_t)tile0 * groups * 4 + (lane & 3);
  const auto issue = [&](int step) {  // always commits a group (empty past the end)
    if (step < steps) {
      ::uint4* stage = ring + (static_cast<unsigned>(step) % Stages) * stage_vecs;
      const int group = (c_begin + step) / chunks_per_group;
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl) {
        ::uint4* ts = stage + tl * sparse24_tile_vecs;
        cp_async16(ts + lane, code_ptr + ((size_t)tl * chunks + step) * 32);
        if (lane < 16) cp_async16(ts + 32 + lane, meta_ptr + ((size_t)tl * chunks + step) * 16);
        else if (lane < 20) cp_async16(ts + 48 + (lane & 3), scale_ptr + ((size_t)tl * groups + group) * 4);
      }
    }
    cp_async_commit();
  };
  // Rows past m read row m - 1 (their outputs are never stored).
  const __half* x_lane[MTiles];
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt) x_lane[mt] = x + (size_t)min(mt * 8 + g, m - 1) * ldx + 2 * t;

#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) issue(s);
  float acc[MTiles][Tiles][4] = {}, part[MTiles][Tiles][4] = {};
  for (int step = 0; step < steps; ++step) {
    const int c = c_begin + step;
    uint32_t xb[MTiles][4][4];  // [m tile][mma i][B register r]: k = 128 c + 32 i + 2t + 8r
#pragma unroll
    for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int r = 0; r < 4; ++r) xb[mt][i][r] = __ldg(reinterpret_cast<const uint32_t*>(x_lane[mt] + c * 128 + 32 * i + 8 * r));
    cp_async_wait<Stages - 2>();
    __syncwarp();
    issue(step + Stages - 1);
    const ::uint4* stage = ring + (static_cast<unsigned>(step) % Stages) * stage_vecs;
    const bool flush = c + 1 == c_end || (c + 1) % chunks_per_group == 0;  // end of a group: scale its sums
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl) {
      const ::uint4* ts = stage + tl * sparse24_tile_vecs;
      const ::uint4 q = ts[lane], mq = ts[32 + 2 * g + (t & 1)];
      const uint32_t* stage_scales = reinterpret_cast<const uint32_t*>(ts + 48);
      const uint32_t sc_g = stage_scales[g], sc_g8 = stage_scales[g + 8];
      const uint32_t words[4] = {q.x, q.y, q.z, q.w}, meta[4] = {mq.x, mq.y, mq.z, mq.w};
      const uint32_t bias_g = __byte_perm(sc_g, 0, 0x3232);
      uint32_t bias_g8 = __byte_perm(sc_g8, 0, 0x3232);  // -(64 + zero) = 960 - (1024 + zero), as gemm.cuh
      asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(bias_g8) : "r"(bias_g8), "r"(0xbc00bc00u), "r"(0x63806380u));
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        uint32_t a[4];
        dequant<4, dequant_kind::integer, false>(a, words, i, bias_g, bias_g8, nullptr);
#pragma unroll
        for (int mt = 0; mt < MTiles; ++mt) mma_sp_16832(part[mt][tl], a, xb[mt][i], meta[i]);
      }
      if (flush) {
        const float s_g = __low2float(*reinterpret_cast<const __half2*>(&sc_g));
        const float s_g8 = __low2float(*reinterpret_cast<const __half2*>(&sc_g8));
#pragma unroll
        for (int mt = 0; mt < MTiles; ++mt) {
          acc[mt][tl][0] += s_g * part[mt][tl][0];
          acc[mt][tl][1] += s_g * part[mt][tl][1];
          acc[mt][tl][2] += s_g8 * part[mt][tl][2];
          acc[mt][tl][3] += s_g8 * part[mt][tl][3];
          part[mt][tl][0] = part[mt][tl][1] = part[mt][tl][2] = part[mt][tl][3] = 0.0f;
        }
      }
    }
  }
  cp_async_wait<0>();

  // Reduce the warps' sums through shared memory ([value][warp][lane]) and store fp16.
  constexpr int values = MTiles * Tiles * 4;
  static_assert(values * Warps * 32 * 4 <= Warps * Stages * stage_vecs * 16, "the reduction reuses the ring");
  float* red = reinterpret_cast<float*>(smem);
  __syncthreads();
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
      for (int i = 0; i < 4; ++i) red[(((mt * Tiles + tl) * 4 + i) * Warps + warp) * 32 + lane] = acc[mt][tl][i];
  __syncthreads();
  for (int idx = threadIdx.x; idx < values * 32; idx += blockDim.x) {
    const int v = idx >> 5, l = idx & 31;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < Warps; ++w) sum += red[(v * Warps + w) * 32 + l];
    const int i = v & 3, tl = (v >> 2) % Tiles, mt = (v >> 2) / Tiles;
    const int row = (tile0 + tl) * 16 + (l >> 2) + 8 * (i >> 1), col = mt * 8 + 2 * (l & 3) + (i & 1);
    if (row < n && col < m) y[(size_t)col * ldy + row] = __float2half(sum);
  }
}

/// Launches one instantiation (8 stages a warp; 4 with 4 tiles, to fit shared memory).
template <int MTiles, int Tiles, int Warps, class Scheme>
void launch_sparse24(const __half* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, __half* y, int ldy,
                     cudaStream_t stream) {
  constexpr int stages = Tiles == 4 ? 4 : 8;
  constexpr auto kernel = sparse24_gemm_kernel<MTiles, Tiles, stages, Warps>;
  constexpr int bytes = Warps * stages * Tiles * sparse24_tile_vecs * 16;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  const int blocks = static_cast<int>(w.tiles()) / Tiles;
  kernel<<<blocks, Warps * 32, bytes, stream>>>(x, m, ldx, w.codes, w.metadata, w.scales, static_cast<int>(w.rows),
                                                static_cast<int>(w.chunks), static_cast<int>(w.chunks_per_group),
                                                static_cast<int>(w.groups), y, ldy);
}

}  // namespace detail

/// y[m x N] = x[m x K] · Wᵀ with W 2:4 sparse (pack_sparse24), fp16 in and out, on `stream`
/// (asynchronous). Checked: 1 <= m <= 16; x 4-byte aligned with ldx >= K, ldx even; ldy >= N;
/// options.tiles_per_block 1, 2 or 4 dividing the tile count (4: with 16 warps), options.warps 8 or
/// 16 (0: chosen from the shape as gemm() does). y must not overlap x.
template <class Scheme>
void gemm_sparse24(const __half* x, std::size_t m, std::size_t ldx, const packed_sparse24_view<Scheme>& w, __half* y,
                   std::size_t ldy, cudaStream_t stream = nullptr, gemm_options options = {}) {
  LOWBIT_CHECK(m >= 1 && m <= 16, "cuda::gemm_sparse24: m=" << m << " must be in [1, 16]");
  LOWBIT_CHECK(w.codes != nullptr, "cuda::gemm_sparse24: the packed weights are empty");
  LOWBIT_CHECK(ldx >= w.cols && ldx % 2 == 0, "cuda::gemm_sparse24: ldx=" << ldx << " must be >= K=" << w.cols << " and even");
  LOWBIT_CHECK(reinterpret_cast<std::uintptr_t>(x) % 4 == 0, "cuda::gemm_sparse24: x must be 4-byte aligned");
  LOWBIT_CHECK(ldy >= w.rows, "cuda::gemm_sparse24: ldy=" << ldy << " must be >= N=" << w.rows);
  const int tiles = static_cast<int>(w.tiles());
  int per_block = options.tiles_per_block, warps = options.warps;
  const int sms = (per_block == 0 || warps == 0) ? detail::sm_count() : 0;
  if (per_block == 0) {  // as gemm(): 4 tiles and 16 warps when that leaves >= 0.9 blocks an SM
    if (warps != 8 && tiles % 4 == 0 && 10 * (tiles / 4) >= 9 * sms) per_block = 4, warps = 16;
    else per_block = tiles % 2 == 0 ? 2 : 1;
  }
  if (warps == 0) warps = (tiles + per_block - 1) / per_block < 3 * sms / 2 ? 16 : 8;
  LOWBIT_CHECK(warps == 8 || warps == 16, "cuda::gemm_sparse24: warps=" << warps << " must be 8 or 16");
  LOWBIT_CHECK(per_block == 1 || (per_block == 2 && tiles % 2 == 0) || (per_block == 4 && tiles % 4 == 0 && warps == 16),
               "cuda::gemm_sparse24: tiles_per_block=" << per_block << " must be 1, 2 with an even tile count (" << tiles
                                                       << "), or 4 with a tile count divisible by 4 and 16 warps");
  const int mi = static_cast<int>(m), lx = static_cast<int>(ldx), ly = static_cast<int>(ldy);
  const bool two = m > 8;
  if (per_block == 4) {
    if (two) detail::launch_sparse24<2, 4, 16>(x, mi, lx, w, y, ly, stream);
    else detail::launch_sparse24<1, 4, 16>(x, mi, lx, w, y, ly, stream);
  } else if (per_block == 2) {
    if (warps == 8) {
      if (two) detail::launch_sparse24<2, 2, 8>(x, mi, lx, w, y, ly, stream);
      else detail::launch_sparse24<1, 2, 8>(x, mi, lx, w, y, ly, stream);
    } else {
      if (two) detail::launch_sparse24<2, 2, 16>(x, mi, lx, w, y, ly, stream);
      else detail::launch_sparse24<1, 2, 16>(x, mi, lx, w, y, ly, stream);
    }
  } else {
    if (warps == 8) {
      if (two) detail::launch_sparse24<2, 1, 8>(x, mi, lx, w, y, ly, stream);
      else detail::launch_sparse24<1, 1, 8>(x, mi, lx, w, y, ly, stream);
    } else {
      if (two) detail::launch_sparse24<2, 1, 16>(x, mi, lx, w, y, ly, stream);
      else detail::launch_sparse24<1, 1, 16>(x, mi, lx, w, y, ly, stream);
    }
  }
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace lowbit
