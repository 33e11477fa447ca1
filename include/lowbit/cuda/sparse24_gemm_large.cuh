/// \file
/// \brief cuda::gemm_sparse24 for M > 64 (prefill): a tiled 2:4 GEMM on mma.sp over the same packed
/// layout as the small-M kernels (sparse24_gemm.cuh; included from there, not on its own).
///
/// A block computes BN = WarpsN x Tiles x 16 weight rows by BM = WarpsM x MT x 8 activation rows:
/// each 128-wide chunk of K (64 kept values a row) is copied by all of its threads (cp.async, a ring
/// of Stages stages) as the block's tiles' kept values / codes, metadata and scale words
/// (sparse24_tile_vecs each, as the small-M rings hold them) and BM rows of x (272-byte rows:
/// ldmatrix without bank conflicts). Warp (wn, wm) multiplies its Tiles weight tiles (the sparse A
/// of mma.sp.m16n8k32, read by sparse24_tile: plain values as stored, codes dequantized in
/// registers) by its MT 8-row x tiles (B fragments by ldmatrix.x4). Integer codes sum each scale
/// group in fp32 and scale it at the group's end (flush_group), as the small-M kernels do; the
/// numerics are theirs. Blocks are ordered in columns of 8 weight blocks (each x block is read by
/// 8 consecutive blocks, then the next; the weight blocks of a column stay in L2). Too few blocks
/// for the SMs (small M, few rows): K is split as gemm.cuh's wide kernels split it (wide_split,
/// wide_store: partials summed in split order).
#pragma once

#include "sparse24_gemm.cuh"
#include "sparse24_gemm_wgmma.cuh"

namespace lowbit {
namespace cuda {
namespace detail {

/// Shared memory of the large kernel: Stages stages of XRows activation rows (272 bytes each), then
/// TilesN tiles (sparse24_tile_vecs each).
template <int Vecs, int TilesN, int XRows, int Stages>
struct sparse24_large_smem {
  static constexpr int x_vecs = XRows * sparse24_x_row_vecs;
  static constexpr int stage_vecs = x_vecs + TilesN * sparse24_tile_vecs<Vecs>;
  static constexpr std::size_t bytes = 16u * Stages * stage_vecs;
};

/// The block shape: Tiles 16-row weight tiles by MT 8-row x tiles a warp, WarpsN x WarpsM warps.
template <int Vecs, int Tiles, int MT, int WarpsN, int WarpsM, int Stages>
struct sparse24_large_shape {
  static constexpr int vecs = Vecs, tiles = Tiles, mt = MT, warps_n = WarpsN, warps_m = WarpsM, stages = Stages;
  static constexpr int warps = WarpsN * WarpsM, tiles_n = WarpsN * Tiles, rows_n = tiles_n * 16, rows_m = WarpsM * MT * 8;
  using layout = sparse24_large_smem<Vecs, tiles_n, rows_m, Stages>;
  static_assert(layout::bytes <= 227u * 1024u, "cuda::gemm_sparse24: a large-M ring that does not fit shared memory");
};

/// Grid: (blocks_n x blocks_m output blocks, splits of K). Block b's output block: columns of 8
/// weight blocks (the last one narrower), x blocks one after the other inside a column.
template <class T, class Shape>
__global__ void __launch_bounds__(Shape::warps * 32, 1)
    sparse24_large_kernel(const T* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                          const ::uint4* __restrict__ metadata, const uint32_t* __restrict__ scales, int n, int tiles,
                          int chunks, int chunks_per_group, int groups, int blocks_n, int split_chunks,
                          float* __restrict__ partials, unsigned* __restrict__ counters, T* __restrict__ y, int ldy) {
  constexpr int Vecs = Shape::vecs, Tiles = Shape::tiles, MT = Shape::mt, WarpsM = Shape::warps_m, Stages = Shape::stages;
  constexpr int threads = Shape::warps * 32, tiles_n = Shape::tiles_n;
  constexpr bool bf16 = is_bf16<T>, plain = Vecs == 4;
  using layout = typename Shape::layout;
  constexpr int tile_vecs = sparse24_tile_vecs<Vecs>, meta_at = 32 * Vecs, aux_vecs = tile_vecs - meta_at;
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wn = warp / WarpsM, wm = warp % WarpsM;
  constexpr int column = 8;  // weight blocks a column of the block order
  const int blocks_m = static_cast<int>(gridDim.x) / blocks_n, b = static_cast<int>(blockIdx.x);
  const int col = b / (column * blocks_m), within = b - col * column * blocks_m;
  const int width = min(column, blocks_n - col * column);
  const int nb = col * column + within % width, mb = within / width;
  const int tile0 = nb * tiles_n, m0 = mb * Shape::rows_m;
  const int c0 = blockIdx.y * split_chunks, steps = min(chunks - c0, split_chunks);

  const unsigned ring = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  // x copies: row tid / 16 + 16 i of the block (clamped to m - 1: those outputs are never stored), piece tid % 16.
  constexpr int x_rows_per_pass = threads / 16;
  const T* x_src = x + (threadIdx.x & 15) * 8;
  const auto issue = [&](int step) {  // always commits a group (empty past the end)
    if (step < steps) {
      const int c = c0 + step;
      const unsigned stage = ring + (static_cast<unsigned>(step) % Stages) * layout::stage_vecs * 16;
      const unsigned wstage = stage + layout::x_vecs * 16;
      // Codes / kept values: tiles_n x 32 Vecs vectors.
#pragma unroll
      for (int i = 0; i < (tiles_n * meta_at + threads - 1) / threads; ++i) {
        const int idx = threadIdx.x + i * threads;
        if (tiles_n * meta_at % threads == 0 || idx < tiles_n * meta_at) {
          const int tl = idx / meta_at, v = idx % meta_at;
          const std::size_t tile = static_cast<std::size_t>(min(tile0 + tl, tiles - 1));
          cp_async16_at(wstage + (tl * tile_vecs + v) * 16, codes + (tile * chunks + c) * meta_at + v);
        }
      }
      // Metadata (16 vectors a tile) and scale words (4, codes only).
      const int group = plain ? 0 : c / chunks_per_group;
#pragma unroll
      for (int i = 0; i < (tiles_n * aux_vecs + threads - 1) / threads; ++i) {
        const int idx = threadIdx.x + i * threads;
        if (tiles_n * aux_vecs % threads == 0 || idx < tiles_n * aux_vecs) {
          const int tl = idx / aux_vecs, v = idx % aux_vecs;
          const std::size_t tile = static_cast<std::size_t>(min(tile0 + tl, tiles - 1));
          const ::uint4* src = v < 16 ? metadata + (tile * chunks + c) * 16 + v
                                      : reinterpret_cast<const ::uint4*>(scales) + (tile * groups + group) * 4 + (v - 16);
          cp_async16_at(wstage + (tl * tile_vecs + meta_at + v) * 16, src);
        }
      }
      // x rows m0 .. m0 + rows_m - 1 at k = 128 c ..: 16 pieces of 16 bytes a row.
#pragma unroll
      for (int i = 0; i < Shape::rows_m / x_rows_per_pass; ++i) {
        const int r = static_cast<int>(threadIdx.x >> 4) + i * x_rows_per_pass;
        cp_async16_at(stage + (r * sparse24_x_row_vecs + (threadIdx.x & 15)) * 16,
                      x_src + (size_t)min(m0 + r, m - 1) * ldx + (size_t)c * 128);
      }
    }
    cp_async_commit();
  };
  static_assert(Shape::rows_m % x_rows_per_pass == 0, "sparse24_large_kernel: x rows a pass");
  // This lane's ldmatrix row for x tile mt, mma 0 (mma i: + 64 i bytes).
  unsigned x_at[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
    x_at[mt] = (((wm * MT + mt) * 8 + (lane & 7)) * sparse24_x_row_vecs + (lane >> 3)) * 16;

#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) issue(s);
  float acc[MT][Tiles][4] = {}, part[plain ? 1 : MT][Tiles][4] = {};
  for (int step = 0; step < steps; ++step) {
    cp_async_wait<Stages - 2>();
    __syncthreads();  // the stage came from every thread; and all are done with the stage refilled next
    issue(step + Stages - 1);
    const unsigned slot = static_cast<unsigned>(step) % Stages;
    const unsigned stage_x = ring + slot * layout::stage_vecs * 16;
    const ::uint4* mine = smem + slot * layout::stage_vecs + layout::x_vecs + wn * Tiles * tile_vecs;
    const int c = c0 + step;
    const bool flush = step + 1 == steps || (c + 1) % chunks_per_group == 0;  // end of a group: scale its sums
    sparse24_tile<Vecs, bf16> tile[Tiles];
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl) tile[tl].load(mine + tl * tile_vecs, lane);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      // mma i's A fragments of the warp's tiles, then x tile by x tile (B: 4 registers at a time).
      uint32_t a[Tiles][4];
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl) tile[tl].fragment(a[tl], mine + tl * tile_vecs, lane, i);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        uint32_t bx[4];
        ldmatrix_x4(bx, stage_x + x_at[mt] + 64 * i);
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl) {
          if constexpr (plain) mma_sp_16832<bf16>(acc[mt][tl], a[tl], bx, tile[tl].meta[i]);
          else mma_sp_16832<bf16>(part[mt][tl], a[tl], bx, tile[tl].meta[i]);
        }
      }
    }
    if constexpr (!plain) {
      if (flush) {
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl) flush_group(acc, part, tl, tile[tl].scale_g(), tile[tl].scale_g8());
      }
    }
  }
  cp_async_wait<0>();
  wide_store<MT, Tiles, Shape::warps>(acc, partials, counters, warp, lane, tile0 + wn * Tiles, n, m, y, ldy,
                                      m0 + wm * MT * 8);
}

/// The default block shapes (measured on an H100, docs/cuda-gemm-notes.md): plain values 256 x 128
/// (warps 4 x 2 of 64 x 64: 128 fp32 sums a thread), 3 stages; codes 128 x 128 (warps 2 x 4 of 64
/// x 32: the group's partial sums double the registers), 4 stages.
template <int Vecs>
using sparse24_large_default =
    std::conditional_t<Vecs == 4, sparse24_large_shape<4, 4, 8, 4, 2, 3>, sparse24_large_shape<Vecs, 4, 4, 2, 4, 4>>;

/// M > 64 with the block shape Shape; K split as options.split_k says (0: when the output blocks
/// are fewer than the SMs, about one block an SM).
template <class Shape, class Scheme, class T>
void gemm_sparse24_large_with(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                              cudaStream_t stream, const gemm_options& options) {
  static_assert(Shape::vecs == packed_sparse24_view<Scheme>::vecs, "cuda::gemm_sparse24: a block shape of another kind");
  const int n = static_cast<int>(w.rows), chunks = static_cast<int>(w.chunks);
  const std::size_t blocks_n = (w.rows + Shape::rows_n - 1) / Shape::rows_n;
  const std::size_t blocks_m = (static_cast<std::size_t>(m) + Shape::rows_m - 1) / Shape::rows_m;
  LOWBIT_CHECK(blocks_n * blocks_m < (std::size_t(1) << 31),
               "cuda::gemm_sparse24: m=" << m << " by N=" << w.rows << " is too many blocks");
  const int blocks = static_cast<int>(blocks_n * blocks_m);
  const wide_split split("cuda::gemm_sparse24", chunks, blocks, 1, std::size_t(Shape::rows_n) * Shape::rows_m, options, stream);
  constexpr auto kernel = sparse24_large_kernel<T, Shape>;
  constexpr std::size_t bytes = Shape::layout::bytes;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  kernel<<<dim3(blocks, split.splits), Shape::warps * 32, bytes, stream>>>(
      x, m, ldx, w.codes, w.metadata, w.scales, n, static_cast<int>(w.tiles()), chunks, static_cast<int>(w.chunks_per_group),
      static_cast<int>(w.groups), static_cast<int>(blocks_n), split.split_chunks, split.partials, split.counters, y, ldy);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

template <class Scheme, class T>
void gemm_sparse24_large(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                         cudaStream_t stream, const gemm_options& options) {
  LOWBIT_CHECK(options.warps == 0 || options.warps == 8,
               "cuda::gemm_sparse24: m=" << m << " > 64 takes 8 warps a block (warps=" << options.warps << ")");
  constexpr int vecs = packed_sparse24_view<Scheme>::vecs;
  // Plain values where the code for the device has sm_90a's wgmma.sp: the wgmma kernel
  // (sparse24_gemm_wgmma.cuh).
  if constexpr (vecs == 4) {
    if (sparse24_wgmma_usable()) {
      gemm_sparse24_wgmma(x, m, ldx, w, y, ldy, stream, options);
      return;
    }
  }
  // Plain values at M <= 128: 256-row blocks leave 16-32 output blocks for 132 SMs even with split
  // K; 128 x 128 blocks (8 warps of 64 x 32) ran 77 -> 61 us at 8192^2 and 94 -> 59 us at
  // 4096 x 14336 (H100, M = 128; equal at M = 256, slower at 512).
  if constexpr (vecs == 4) {
    if (m <= 128) {
      gemm_sparse24_large_with<sparse24_large_shape<4, 4, 4, 2, 4, 4>>(x, m, ldx, w, y, ldy, stream, options);
      return;
    }
  }
  gemm_sparse24_large_with<sparse24_large_default<vecs>>(x, m, ldx, w, y, ldy, stream, options);
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
