/// \file
/// \brief cuda::gemm for M > 64 (prefill): a tiled tensor-core GEMM over the packed weight layout
/// (packed_weights.cuh), every format gemm.cuh takes, fp16 or bf16 activations.
///
/// A block computes BN = WarpsN x Tiles x 16 weight rows by BM = WarpsM x MT x 8 activation rows.
/// Each 64-wide chunk of K is copied by all of its threads (cp.async, a ring of Stages stages, one
/// barrier a chunk): the block's tiles' codes and scale words as the layout stores them, and BM rows
/// of x (144-byte rows: the lanes' 16-byte reads are conflict-free). Warp (wn, wm) dequantizes its
/// Tiles weight tiles in registers once a chunk (gemm_common.cuh's dequant: the A fragments of
/// mma.m16n8k16) and multiplies them by its MT 8-row x tiles (B fragments: one 16-byte read per x
/// tile and half chunk, in the layout's k order). Each scale group is summed in fp32 and scaled at its
/// end (flush_group), so the numerics are those of the M <= 64 kernels. Blocks run in columns of
/// Column weight blocks (the x blocks one after another inside a column: a column's weights stay in
/// L2 while x is read once a column). Too few blocks for the SMs (M near 64, few rows): K is split
/// as the wide kernel splits it (wide_split / wide_store, partials summed in split order).
/// On sm_90a gemm_large hands every format but MXFP4 to the wgmma kernel (gemm_wgmma.cuh, 1.5-2.2x
/// faster on an H100); this kernel serves sm_80, MXFP4 and options.warps = 8 / 16.
#pragma once

#include "gemm_common.cuh"
#include "gemm_wgmma.cuh"

namespace lowbit {
namespace cuda {
namespace detail {

/// The block shape and its shared memory: the table (codebook formats), then Stages stages of
/// [BM x rows of x (9 vectors)][tiles_n x Bits / 4 x 32 code vectors][tiles_n x 4 scale vectors].
template <int Bits, dequant_kind Kind, int Tiles, int MT, int WarpsN, int WarpsM, int Stages, int Column>
struct large_shape {
  static constexpr int bits = Bits, vecs = Bits / 4, tiles = Tiles, mt = MT, warps_m = WarpsM, stages = Stages;
  static constexpr int column = Column, warps = WarpsN * WarpsM, threads = warps * 32;
  static constexpr int tiles_n = WarpsN * Tiles, rows_n = tiles_n * 16, rows_m = WarpsM * MT * 8;
  static constexpr int table_vecs = Kind == dequant_kind::table ? 256 * 32 / 4 : 0;
  static constexpr int x_row_vecs = 9;
  static constexpr int x_vecs = rows_m * x_row_vecs;
  static constexpr int code_vecs = tiles_n * vecs * 32;
  static constexpr int stage_vecs = x_vecs + code_vecs + tiles_n * 4;
  static constexpr std::size_t bytes = 16u * (table_vecs + Stages * stage_vecs);
  static_assert(bytes <= 227u * 1024u, "cuda::gemm: a large-M ring that does not fit shared memory");
  static_assert(rows_m * 8 % threads == 0 && tiles_n * 4 <= threads, "cuda::gemm: large-M copies a thread");
};

/// Grid: (blocks_n x blocks_m output blocks, splits of K). Block b's output block: columns of
/// Column weight blocks (the last one narrower), x blocks one after the other inside a column.
template <class T, dequant_kind Kind, class Shape>
__global__ void __launch_bounds__(Shape::threads, 1)
    gemm_large_kernel(const T* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                      const uint32_t* __restrict__ scales, code_table table, int n, int k, int tiles, int chunks,
                      int chunks_per_group, int groups, int blocks_n, int split_chunks, float* __restrict__ partials,
                      unsigned* __restrict__ counters, T* __restrict__ y, int ldy) {
  constexpr int Bits = Shape::bits, vecs = Shape::vecs, Tiles = Shape::tiles, MT = Shape::mt, WarpsM = Shape::warps_m;
  constexpr int Stages = Shape::stages, threads = Shape::threads, tiles_n = Shape::tiles_n, column = Shape::column;
  constexpr bool bf16 = is_bf16<T>, mx = Kind == dequant_kind::mxfp4;  // MXFP4: lane t's k as in gemm_kernel
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wn = warp / WarpsM, wm = warp % WarpsM;
  const int g = lane >> 2, t = lane & 3;
  const int blocks_m = static_cast<int>(gridDim.x) / blocks_n, b = static_cast<int>(blockIdx.x);
  const int col = b / (column * blocks_m), within = b - col * column * blocks_m;
  const int width = min(column, blocks_n - col * column);
  const int nb = col * column + within % width, mb = within / width;
  const int tile0 = nb * tiles_n, m0 = mb * Shape::rows_m;
  const int c0 = blockIdx.y * split_chunks, steps = min(chunks - c0, split_chunks);
  uint32_t* table_smem = reinterpret_cast<uint32_t*>(smem);
  const ::uint4* ring = smem + Shape::table_vecs;
  const unsigned ring_at = static_cast<unsigned>(__cvta_generic_to_shared(ring));
  constexpr unsigned stage_bytes = 16u * Shape::stage_vecs;

  // Copy sources, advanced a chunk per issue (no index math per chunk). Tiles past the matrix read
  // the last tile (their rows are never stored); x rows past m are zero-filled, and so is x past K
  // (the padded codes decode to -zero, not 0).
  constexpr int code_copies = (Shape::code_vecs + threads - 1) / threads, tile_vecs = vecs * 32;
  const ::uint4* code_src[code_copies];
#pragma unroll
  for (int i = 0; i < code_copies; ++i) {
    const int idx = min(static_cast<int>(threadIdx.x) + i * threads, Shape::code_vecs - 1);
    code_src[i] = codes + ((size_t)min(tile0 + idx / tile_vecs, tiles - 1) * chunks + c0) * tile_vecs + idx % tile_vecs;
  }
  const int group0 = c0 / chunks_per_group;
  const bool scale_copier = threadIdx.x < tiles_n * 4;  // thread 4 tl + q: quarter q of tile tl's 16 words
  const ::uint4* scale_src = reinterpret_cast<const ::uint4*>(scales) +
                             ((size_t)min(tile0 + static_cast<int>(threadIdx.x >> 2) % tiles_n, tiles - 1) * groups + group0) * 4 +
                             (threadIdx.x & 3);
  int issue_left = (group0 + 1) * chunks_per_group - c0;  // chunks of the scale group left to issue
  // x: piece tid % 8 (16 bytes) of rows tid / 8 + i threads / 8; one pointer (row 0's piece), the
  // rows' offsets made at each issue (registers, not index math, are what the 16-warp shapes lack).
  constexpr int x_pieces = Shape::rows_m * 8 / threads, x_row_step = threads / 8;
  const T* x_piece = x + (size_t)c0 * 64 + (threadIdx.x & 7) * 8;
  int x_k = c0 * 64 + (threadIdx.x & 7) * 8;
  const int x_row0 = m0 + static_cast<int>(threadIdx.x >> 3);
  unsigned issue_stage = 0;  // byte offset of the stage the next issue fills
  int issued = 0;
  const auto issue = [&]() {  // the split's next chunk; always commits a group (empty past the end)
    if (issued < steps) {
      const unsigned stage = ring_at + issue_stage, wstage = stage + 16u * Shape::x_vecs;
#pragma unroll
      for (int i = 0; i < code_copies; ++i) {
        const int idx = threadIdx.x + i * threads;
        if (Shape::code_vecs % threads == 0 || idx < Shape::code_vecs) cp_async16_at(wstage + 16u * idx, code_src[i]);
        code_src[i] += tile_vecs;
      }
      if (scale_copier) cp_async16_at(wstage + 16u * (Shape::code_vecs + threadIdx.x), scale_src);
      if (--issue_left == 0) scale_src += 4, issue_left = chunks_per_group;
      const int k_bytes = 2 * max(0, min(8, k - x_k));
#pragma unroll
      for (int i = 0; i < x_pieces; ++i) {
        const int idx = threadIdx.x + i * threads, row = x_row0 + i * x_row_step;
        const int bytes = row < m ? k_bytes : 0;
        cp_async16_fill_at(stage + 16u * ((idx >> 3) * Shape::x_row_vecs + (idx & 7)),
                           bytes ? x_piece + (size_t)row * ldx : x, bytes);
      }
      x_piece += 64;
      x_k += 64;
      issue_stage = issue_stage + stage_bytes == Stages * stage_bytes ? 0u : issue_stage + stage_bytes;
      ++issued;
    }
    cp_async_commit();
  };

#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) issue();
  if constexpr (Kind == dequant_kind::table) fill_table<threads>(table_smem, table);  // the loop's first barrier
  const uint32_t* lane_table = table_smem + lane;

  float acc[MT][Tiles][4] = {}, part[MT][Tiles][4] = {};
  int x_row[MT];  // this lane's activation row of x tile mt in a stage
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) x_row[mt] = ((wm * MT + mt) * 8 + g) * Shape::x_row_vecs;

  int read_stage = 0, left = (group0 + 1) * chunks_per_group - c0;  // the stage computed next; chunks left in its group
  for (int step = 0; step < steps; ++step) {
    cp_async_wait<Stages - 2>();
    __syncthreads();  // the stage came from every thread; and all are done with the stage refilled next
    issue();
    const ::uint4* stage = ring + read_stage;
    read_stage = read_stage + Shape::stage_vecs == Stages * Shape::stage_vecs ? 0 : read_stage + Shape::stage_vecs;
    const ::uint4* mine = stage + Shape::x_vecs + wn * Tiles * tile_vecs;
    const uint32_t* stage_scales = reinterpret_cast<const uint32_t*>(stage + Shape::x_vecs + Shape::code_vecs) + wn * Tiles * 16;
    const bool flush = --left == 0 || step + 1 == steps;
    if (left == 0) left = chunks_per_group;
    (void)flush;  // unused with MXFP4 (a scale a half chunk)

    uint32_t words[Tiles][4 * vecs], sc_g[Tiles], sc_g8[Tiles], bias_g[Tiles], bias_g8[Tiles];
    load_chunk_tiles<Bits, Kind, bf16>(mine, stage_scales, lane, g, words, sc_g, sc_g8, bias_g, bias_g8);
    // Two halves of the chunk (mmas 2h, 2h + 1; MXFP4: one block each): the tiles' A fragments are
    // made once and serve all MT x tiles; 4 x tiles at a time, the first mma of the half for all of
    // them, then the second (independent mmas in a row).
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t a[Tiles][2][4];
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) dequant<Bits, Kind, bf16>(a[tl][jj], words[tl], 2 * h + jj, bias_g[tl], bias_g8[tl], lane_table);
      constexpr int XGroup = MT % 4 == 0 ? 4 : MT;
#pragma unroll
      for (int x0 = 0; x0 < MT; x0 += XGroup) {
        ::uint4 xq[XGroup];
#pragma unroll
        for (int i = 0; i < XGroup; ++i) xq[i] = stage[x_row[x0 + i] + (mx ? 4 * h + t : 2 * t + h)];
#pragma unroll
        for (int i = 0; i < XGroup; ++i)
#pragma unroll
          for (int tl = 0; tl < Tiles; ++tl) mma_16816<bf16>(part[x0 + i][tl], a[tl][0], xq[i].x, xq[i].y);
#pragma unroll
        for (int i = 0; i < XGroup; ++i)
#pragma unroll
          for (int tl = 0; tl < Tiles; ++tl) mma_16816<bf16>(part[x0 + i][tl], a[tl][1], xq[i].z, xq[i].w);
      }
      if constexpr (mx) {  // end of MX block h
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl) flush_group(acc, part, tl, mx_block_scale(sc_g[tl], h), mx_block_scale(sc_g8[tl], h));
      }
    }
    if constexpr (!mx) {
      if (flush) {
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl) flush_group(acc, part, tl, group_scale<Kind>(sc_g[tl]), group_scale<Kind>(sc_g8[tl]));
      }
    }
  }
  cp_async_wait<0>();
  wide_store<MT, Tiles, Shape::warps>(acc, partials, counters, warp, lane, tile0 + wn * Tiles, n, m, y, ldy,
                                      m0 + wm * MT * 8);
}

/// The block shapes (measured on an H100, docs/cuda-gemm-notes.md): 128 x 128 of 8 warps (4 along N x
/// 2 along M, 2 tiles x 8 x tiles each: the group's partial sums double the fp32 registers, ~230 a
/// thread; the default) or of 16 warps (4 x 4, 2 tiles x 4 x tiles: <= 128 registers; 10-15% slower).
/// 4 stages, columns of 16 weight blocks.
template <int Bits, dequant_kind Kind>
using large_8_warps = large_shape<Bits, Kind, 2, 8, 4, 2, 4, 16>;
template <int Bits, dequant_kind Kind>
using large_16_warps = large_shape<Bits, Kind, 2, 4, 4, 4, 4, 16>;

/// M > 64 with the block shape Shape; K split as options.split_k says (0: when the output blocks
/// are fewer than the SMs, about one block an SM).
template <class Shape, class Scheme, class T>
void gemm_large_with(const T* x, int m, int ldx, const packed_view<Scheme>& w, T* y, int ldy, cudaStream_t stream,
                     const gemm_options& options) {
  constexpr dequant_kind kind = gpu_scheme<Scheme>::kind;
  const int chunks = static_cast<int>(w.chunks);
  const std::size_t blocks_n = (w.rows + Shape::rows_n - 1) / Shape::rows_n;
  const std::size_t blocks_m = (static_cast<std::size_t>(m) + Shape::rows_m - 1) / Shape::rows_m;
  LOWBIT_CHECK(blocks_n * blocks_m < (std::size_t(1) << 31), "cuda::gemm: m=" << m << " by N=" << w.rows << " is too many blocks");
  const int blocks = static_cast<int>(blocks_n * blocks_m);
  const wide_split split("cuda::gemm", chunks, blocks, 1, std::size_t(Shape::rows_n) * Shape::rows_m, options, stream);
  constexpr auto kernel = gemm_large_kernel<T, kind, Shape>;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Shape::bytes)));
  kernel<<<dim3(blocks, split.splits), Shape::threads, Shape::bytes, stream>>>(
      x, m, ldx, w.codes, w.scales, w.table[is_bf16<T>], static_cast<int>(w.rows), static_cast<int>(w.cols),
      static_cast<int>(w.tiles()), chunks, static_cast<int>(w.chunks_per_group), static_cast<int>(w.groups),
      static_cast<int>(blocks_n), split.split_chunks, split.partials, split.counters, y, ldy);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

/// M > 64: on sm_90a with options.warps 0, the wgmma kernel (gemm_wgmma.cuh; not MXFP4); else 8
/// warps a block (options.warps 0 or 8) or 16 (16); tiles_per_block is not used.
template <class Scheme, class T>
void gemm_large(const T* x, int m, int ldx, const packed_view<Scheme>& w, T* y, int ldy, cudaStream_t stream,
                const gemm_options& options) {
  constexpr int bits = Scheme::bits;
  constexpr dequant_kind kind = gpu_scheme<Scheme>::kind;
  LOWBIT_CHECK(options.warps == 0 || options.warps == 8 || options.warps == 16,
               "cuda::gemm: m=" << m << " > 64 takes 8 or 16 warps a block (warps=" << options.warps << ")");
  if constexpr (kind != dequant_kind::mxfp4) {
    if (gemm_wgmma_takes<Scheme>(options)) {  // sm_90a: dense wgmma (gemm_wgmma.cuh)
      gemm_wgmma(x, m, ldx, w, y, ldy, stream, options);
      return;
    }
  }
  if (options.warps == 16) gemm_large_with<large_16_warps<bits, kind>>(x, m, ldx, w, y, ldy, stream, options);
  else gemm_large_with<large_8_warps<bits, kind>>(x, m, ldx, w, y, ldy, stream, options);
}

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
