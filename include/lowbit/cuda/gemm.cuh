/// \file
/// \brief cuda::gemm: weight-only low-bit GEMM y = x · Wᵀ, fp16 or bf16 activations, on tensor cores: the
/// small-M kernels (1..64) here, M > 64 in gemm_large.cuh (wgmma on sm_90a: gemm_wgmma.cuh; mma.sync elsewhere).
///
/// The GEMV regime is memory-bound: the kernel's job is to stream the packed weights at HBM
/// bandwidth and keep dequantization off the critical path. Design (see packed_weights.cuh):
///  - Swapped operands: W's tile of 16 outputs is mma.m16n8k16's A (16 x 16), xᵀ its B (16 x 8), so
///    M = 1..8 costs one mma per 16 x 16 weights and M = 9..16 two; padding M to 8 costs nothing
///    that matters (the tensor cores idle at these sizes anyway).
///  - A warp streams 1, 2 or 4 tiles of 16 rows over a range of K with 16-byte cp.async copies
///    into a private ring of shared-memory stages (7 chunks in flight while one is computed, 3 with
///    4 tiles); the 8 or 16 warps of a block split K and reduce through shared memory at the end.
///  - Dequantization in registers, without the scale: integers by the magic number (code | 0x6400 is
///    the fp16 1024 + code; hsub2 of 1024 + zero gives code - zero exactly); 4-bit codebook / float
///    formats (NF4, SF4) by a 256-entry byte -> half2 table in shared memory, replicated per lane
///    (bank = lane, so conflict-free), which each block builds from the 16 values passed by value
///    (code_table, no global loads); FP4 E2M1 and FP8 E4M3 by moving their bits into an fp16. The
///    group scale multiplies the fp32 partial sums of each group, once per group and row, instead of
///    every weight.
/// Numerics: products on tensor cores with fp32 accumulation; weight values exact in fp16 for
/// integer formats, fp4_e2m1 and fp8_e4m3, rounded to fp16 (2^-11 relative) for NF4 / SF4 tables; the
/// output rounded to fp16. Tolerance against float64 (tests/cuda): 2^-10 |y| + 2^-10 Σ|x_k w_k|.
/// bf16 activations: weights dequantized to bf16 (exact but for NF4 / SF4 table values, 2^-9), the
/// bf16 mma, bf16 output; tolerance 2^-8 |y| + 2^-8 Σ|x_k w_k|.
/// M = 17..64 runs a second kernel (gemm_wide_kernel) on the same layout and helpers: its warps
/// split N and share each chunk of x from shared memory, its blocks split K (fp32 partials summed
/// by each split set's last block), so the numerics are the same. On sm_90a M = 33..64 (not MXFP4,
/// options.warps 0) takes the M > 64 wgmma kernel with 64-token blocks instead (1.3x faster at M = 64
/// on an H100; its scale folded into the weights: one more rounding, inside the same tolerance).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "gemm_common.cuh"
#include "gemm_large.cuh"
#include "l2_policy.cuh"
#include "packed_weights.cuh"

namespace lowbit {
namespace cuda {

namespace detail {

inline constexpr int gemm_warps = 8;


/// cp.async of 16 bytes to a shared address when `copy` (predicated, not branched around).
__device__ __forceinline__ void cp_async16_if(unsigned shared, const void* global, bool copy) {
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %2, 0;\n @p cp.async.cg.shared.global [%0], [%1], 16;\n}" ::"r"(shared),
      "l"(global), "r"(static_cast<int>(copy)));
}

/// Shared memory of one block: the table (if any), then each warp's ring of Stages stages. A stage
/// holds one chunk: its codes, 16 scale words a tile and XRows rows of the chunk's activations
/// (64 each, rows padded to 144 bytes so that the lanes' 16-byte reads are conflict-free).
template <int Bits, dequant_kind Kind, int Tiles, int Stages, int Warps, int XRows>
struct gemm_smem {
  static constexpr int table_vecs = Kind == dequant_kind::table ? 256 * 32 / 4 : 0;  // 16-byte units
  static constexpr int code_vecs = Tiles * (Bits / 4) * 32;                           // a stage: one chunk
  static constexpr int x_row_vecs = 9;                                                // 128 bytes + 16 of padding
  static constexpr int stage_vecs = code_vecs + Tiles * 4 + XRows * x_row_vecs;
  static constexpr std::size_t bytes = 16u * (table_vecs + Warps * Stages * stage_vecs);
};
/// The most stages, up to Want, whose ring fits the 227 KB a block may have.
template <int Bits, dequant_kind Kind, int Tiles, int Want, int Warps, int XRows>
constexpr int fit_stages() {
  if constexpr (Want <= 2 || gemm_smem<Bits, Kind, Tiles, Want, Warps, XRows>::bytes <= 227u * 1024u) return Want;
  else return fit_stages<Bits, Kind, Tiles, Want - 1, Warps, XRows>();
}

/// The end of a split-K kernel: each warp's partial sums acc[mt][tl][i] (fragment i of mma
/// tile (mt, tl), as mma.sync / mma.sp leave it) are summed over the Warps warps through shared
/// memory ([value][warp][lane]: conflict-free), and store(row, col, sum) gets each output of the
/// block's rows from tile0 * 16 that lies inside n x m. red: Warps x MTiles x Tiles x 128 floats.
template <int MTiles, int Tiles, int Warps, class Store>
__device__ __forceinline__ void reduce_warps(const float (&acc)[MTiles][Tiles][4], float* red, int warp, int lane,
                                             int tile0, int n, int m, Store&& store) {
  constexpr int values = MTiles * Tiles * 4;
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
    if (row < n && col < m) store(row, col, sum);
  }
}
/// One block: Tiles tiles of 16 rows; its Warps warps split K, each streaming its range of 64-wide
/// chunks through a private ring of Stages shared-memory stages (cp.async), so that Stages - 1
/// chunks of weights are in flight while one is dequantized and multiplied. MTiles = ceil(M / 8);
/// KTail: K is not a multiple of 64 (the last chunk's activations are read element by element, or
/// zero-filled past K when staged). XRows: activation rows staged with each chunk (8 MTiles), or 0.
/// Dependent (dependent_launch.cuh): launched as a programmatic dependent, the first stages' codes
/// and scales are copied before the wait, x after it.
template <class T, int Bits, dequant_kind Kind, int MTiles, int Tiles, int Stages, bool KTail, int Warps, int XRows,
          bool Dependent = false>
__global__ void __launch_bounds__(Warps * 32)
    gemm_kernel(const T* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                const uint32_t* __restrict__ scales, code_table table, int n, int k, int chunks,
                int chunks_per_group, int groups, T* __restrict__ y, int ldy) {
  if constexpr (Dependent) grid_dependents_launch();  // at the start (dependent_launch.cuh says why)
  constexpr bool bf16 = is_bf16<T>;
  // MXFP4: lane t's 16 k of a chunk are 8t .. 8t + 8 and 32 + 8t .. 32 + 8t + 8 (one MX block per
  // pair of mmas; see packed_weights.cuh), else 16t .. 16t + 16. x_off(i): element i's offset.
  constexpr bool mx = Kind == dequant_kind::mxfp4;
  constexpr int lane_k = mx ? 8 : 16;
  const auto x_off = [](int i) { return mx && i >= 8 ? 24 + i : i; };
  extern __shared__ ::uint4 smem[];
  // XRows > 0: the activations come with the weights, by cp.async into the chunk's stage, Stages -
  // 1 chunks ahead. Loaded by the lanes from L2 a chunk ahead (as when XRows = 0), their latency
  // under the weight stream was the largest stall (Nsight Compute: 37% of the samples on the mma
  // that consumed them, int4 M=1).
  constexpr bool x_staged = XRows > 0;
  using layout = gemm_smem<Bits, Kind, Tiles, Stages, Warps, XRows>;
  constexpr int vecs = Bits / 4;  // 16-byte code vectors per lane and chunk
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int tile0 = blockIdx.x * Tiles;
  uint32_t* table_smem = reinterpret_cast<uint32_t*>(smem);
  ::uint4* ring = smem + layout::table_vecs + warp * Stages * layout::stage_vecs;

  // This warp's chunks: K is cut into units of U chunks (2, or 1 when a group is one chunk), dealt
  // to the warps in turn (warp w takes units w, w + Warps, ...), so that at any time the block's
  // warps read neighbouring chunks of each tile (runs of Warps x U x 512 bytes a tile rather than
  // 512-byte pieces 4 KB apart). Measured neutral on an H100 against a contiguous range a warp.
  // The unit as a shift and a mask: step / unit, with unit a runtime 1 or 2, was an integer
  // division, made twice or three times a chunk (H100, 4096 x 14336 M=16, 2 tiles: 21.8 -> 20.5 us).
  const int unit_shift = chunks_per_group == 1 ? 0 : 1, unit = 1 << unit_shift, unit_mask = unit - 1;
  const int units = (chunks + unit - 1) >> unit_shift;
  const int my_units = warp < units ? (units - 1 - warp) / Warps + 1 : 0;
  // The last unit may be short; it belongs to warp (units - 1) % Warps.
  const int steps = (my_units << unit_shift) - ((units - 1) % Warps == warp ? (units << unit_shift) - chunks : 0);
  // The chunks are walked with running indices (the first is warp << unit_shift; next_chunk a
  // step), not remade from the step three times a chunk: step s + 1's chunk is the next one, or the
  // first of the warp's next unit when s ends a unit. With the stage indices, the staged x copies'
  // sources and the x pointers also made once (below): H100, int4 + zero points g128, old and new
  // code interleaved in one call: 4096 x 14336 M=16 20.2 -> 19.0 us, 8192 x 8192 M=16 19.7 -> 19.2,
  // M=1 16.2 -> 16.1; 4096 x 14336 M = 1..4 (2 tiles, x staged) 0.1-0.3 us slower.
  const int unit_jump = (Warps - 1) << unit_shift;
  const auto next_chunk = [&](int c, int step) { return c + 1 + (((step + 1) & unit_mask) == 0 ? unit_jump : 0); };
  // Group of chunk c without an integer division: (c + 0.5) / chunks_per_group in float is exact
  // for c, chunks_per_group < 2^16 (its distance to an integer, >= 0.5 / chunks_per_group, dwarfs
  // the rounding error). (c >> unit_shift where a group is one unit, with the flush test cut to
  // match, measured 1.3 us slower at 4096 x 14336 M=16: 102 -> 120 registers and longer code.)
  const float inv_cpg = 1.0f / static_cast<float>(chunks_per_group);
  const auto group_of = [&](int c) { return static_cast<int>((static_cast<float>(c) + 0.5f) * inv_cpg); };
  const ::uint4* code_ptr = codes + (size_t)tile0 * chunks * vecs * 32 + lane;
  // Offsets from code_ptr in 32 bits (< Tiles x chunks x 64 16-byte units): one wide add a copy
  // rather than 64-bit index math.
  const int tile_vecs = chunks * vecs * 32;
  const ::uint4* scale_ptr =
      reinterpret_cast<const ::uint4*>(scales) + (size_t)(tile0 + (lane >> 2)) * groups * 4 + (lane & 3);

  // Weights and scales are read once: evict_first in L2 (H100, int4 + zero points, old and new
  // code in the same calls: 8192 x 8192 M=1 16.3-16.7 -> 15.4-16.1 us, M=16 19.9-20.1 -> 19.2-19.4;
  // 4096 x 14336 M=1 14.8-15.1 -> 14.0-14.6, M=16 20.0-20.1 -> 19.4-19.6; every format faster).
  const uint64_t read_once = l2_evict_first();
  const unsigned ring_at = static_cast<unsigned>(__cvta_generic_to_shared(ring));
  // Staged x: copy i of a lane is row 4 i + lane / 8 (row m - 1 past m, predicated off), 16-byte piece lane % 8.
  constexpr int x_copies = XRows / 4;
  const T* x_src[x_copies > 0 ? x_copies : 1];
  unsigned x_dst[x_copies > 0 ? x_copies : 1];
  bool x_on[x_copies > 0 ? x_copies : 1];
#pragma unroll
  for (int i = 0; i < x_copies; ++i) {
    const int r = 4 * i + (lane >> 3), piece = lane & 7;
    x_on[i] = r < m;
    x_src[i] = x + (size_t)min(r, m - 1) * ldx + piece * 8;
    x_dst[i] = 16u * (layout::code_vecs + Tiles * 4 + r * layout::x_row_vecs + piece);
  }
  // Step `step` (chunk c) into ring stage `slot`: its codes and scales (copy_w) and staged x
  // (copy_x), then a group committed (commit; empty past the end). The scale copy is predicated
  // (lanes < 4 Tiles), not branched around.
  const auto issue = [&](int step, int c, int slot, bool copy_w = true, bool copy_x = true, bool commit = true) {
    if (step < steps) {
      ::uint4* stage = ring + slot * layout::stage_vecs;
      if (copy_w) {
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
          for (int v = 0; v < vecs; ++v)
            cp_async16_hint(stage + (tl * vecs + v) * 32 + lane, code_ptr + (tl * tile_vecs + c * (vecs * 32) + v * 32),
                            read_once);
        cp_async16_hint_if(ring_at + 16u * (slot * layout::stage_vecs + layout::code_vecs + lane), scale_ptr + group_of(c) * 4,
                           lane < 4 * Tiles, read_once);
      }
      if constexpr (x_staged) {
        // Rows 0 .. min(m, XRows) - 1 of x at k = c * 64 .. + 64: lane = 8 * row + piece (16 bytes),
        // four rows an instruction (sources and destinations made once, rows past m predicated
        // off); past K zeros (the padded codes decode to -zero, not 0).
        ::uint4* xs = stage + layout::code_vecs + Tiles * 4;
        if (copy_x) {
#pragma unroll
          for (int i = 0; i < x_copies; ++i) {
            if (!KTail) {
              cp_async16_if(ring_at + 16u * slot * layout::stage_vecs + x_dst[i], x_src[i] + c * 64, x_on[i]);
            } else {
              const int r = 4 * i + (lane >> 3), piece = lane & 7, kx = c * 64 + piece * 8;
              if (r < m) cp_async16_fill(xs + r * layout::x_row_vecs + piece, kx < k ? x_src[i] + c * 64 : x, 2 * max(0, min(8, k - kx)));
            }
          }
        }
      }
    }
    if (commit) cp_async_commit();
  };
  // Activation rows past m are never stored (column j of the mma's output depends only on column
  // j of B), so lanes of such rows read row m - 1 instead of branching or zeroing; the chunk index
  // is clamped the same way for the prefetch past the warp's range.
  // x_at[mt]: this lane's activations of the chunk loaded next (a running pointer, moved with the
  // chunk: the 64-bit row address is not remade a chunk).
  const T* x_at[MTiles];
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt) x_at[mt] = x + (size_t)min(mt * 8 + g, m - 1) * ldx + lane_k * t + (warp << unit_shift) * 64;
  const auto load_x = [&](::uint4 (&xv)[MTiles][2], int c) {  // chunk c's activations, from x_at
    const int kx = c * 64 + lane_k * t;
#pragma unroll
    for (int mt = 0; mt < MTiles; ++mt) {
      const T* xr = x_at[mt];
      if (!KTail || kx + x_off(15) < k) {
        xv[mt][0] = ldg128(xr);
        xv[mt][1] = ldg128(xr + x_off(8));
      } else {
        uint16_t tail[16];  // bits: +0 in fp16 and bf16 alike
#pragma unroll
        for (int i = 0; i < 16; ++i) tail[i] = kx + x_off(i) < k ? reinterpret_cast<const uint16_t*>(xr)[x_off(i)] : uint16_t(0);
        xv[mt][0] = *reinterpret_cast<const ::uint4*>(tail);
        xv[mt][1] = *reinterpret_cast<const ::uint4*>(tail + 8);
      }
    }
  };

  // Running state: the chunk of the step computed next (c_now) and of the step issued next
  // (c_issue, Stages - 1 steps ahead), and their ring stages.
  int c_now = (warp << unit_shift), c_issue = c_now, slot_now = 0, slot_issue = 0;
  if constexpr (Dependent) {
    // The first stages' codes and scales while the previous kernel finishes, then, once its writes
    // are visible, their x, one group a stage: the first group also holds every first-stage weight
    // (groups complete in order), so the loop's waits stay as they are.
#pragma unroll
    for (int s = 0; s < Stages - 1; ++s) {
      issue(s, c_issue, s, true, false, false);
      c_issue = next_chunk(c_issue, s);
    }
    grid_dependency_wait();
    c_issue = c_now;
#pragma unroll
    for (int s = 0; s < Stages - 1; ++s) {
      issue(s, c_issue, slot_issue, false, true);
      c_issue = next_chunk(c_issue, s);
      ++slot_issue;
    }
  } else {
#pragma unroll
    for (int s = 0; s < Stages - 1; ++s) {
      issue(s, c_issue, slot_issue);
      c_issue = next_chunk(c_issue, s);
      ++slot_issue;
    }
  }
  if constexpr (Kind == dequant_kind::table) {
    fill_table<Warps * 32>(table_smem, table);
    __syncthreads();
  }
  const uint32_t* lane_table = table_smem + lane;

  float acc[MTiles][Tiles][4] = {}, part[MTiles][Tiles][4] = {};
  ::uint4 xv[MTiles][2], xn[MTiles][2];
  // This lane's activation row in a stage (rows past m read row m - 1, as below).
  int x_row_offset[MTiles];
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
    x_row_offset[mt] = layout::code_vecs + Tiles * 4 + min(mt * 8 + g, m - 1) * layout::x_row_vecs;
  // Activations are prefetched a chunk ahead, except with 2 x 4 tiles and 16 warps, where the
  // registers (128 a thread) are needed for the accumulators (loaded at use); with 8 warps a
  // thread may have 255.
  constexpr bool prefetch_x = !x_staged && !(MTiles == 2 && Tiles == 4 && Warps == 16);
  if (prefetch_x && steps > 0) load_x(xv, c_now);  // a warp may have no chunks when K is short
  // One chunk: x_now holds its activations; x_next receives the next chunk's.
  const auto chunk_step = [&](int step, ::uint4 (&x_now)[MTiles][2], ::uint4 (&x_next)[MTiles][2]) {
    cp_async_wait<Stages - 2>();
    __syncwarp();
    issue(step + Stages - 1, c_issue, slot_issue);
    c_issue = next_chunk(c_issue, step + Stages - 1);
    slot_issue = slot_issue + 1 == Stages ? 0 : slot_issue + 1;
    const ::uint4* stage = ring + slot_now * layout::stage_vecs;
    slot_now = slot_now + 1 == Stages ? 0 : slot_now + 1;
    const int c = c_now, c_next = next_chunk(c, step);
    c_now = c_next;
    if constexpr (x_staged) {
      // Lane t's 16 k as two 16-byte reads (MXFP4: 8t .. 8t + 8 and 32 + 8t .. 32 + 8t + 8).
#pragma unroll
      for (int mt = 0; mt < MTiles; ++mt) {
        const ::uint4* xr = stage + x_row_offset[mt];
        x_now[mt][0] = xr[mx ? t : 2 * t];
        x_now[mt][1] = xr[mx ? 4 + t : 2 * t + 1];
      }
      (void)x_next;
    } else if constexpr (prefetch_x) {
      // Past the warp's range: its last chunk again.
      const int dc = step + 1 < steps ? c_next - c : 0;
#pragma unroll
      for (int mt = 0; mt < MTiles; ++mt) x_at[mt] += dc * 64;
      load_x(x_next, c + dc);
    } else {
      load_x(x_now, c);
#pragma unroll
      for (int mt = 0; mt < MTiles; ++mt) x_at[mt] += (c_next - c) * 64;
    }
    const uint32_t* stage_scales = reinterpret_cast<const uint32_t*>(stage + layout::code_vecs);
    // The group's partial sums are flushed at the end of a group, of a unit or of the warp's chunks.
    const bool flush = step + 1 == steps || (step & unit_mask) == unit_mask || group_of(c + 1) != group_of(c);
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl) {
      const uint32_t sc_g = stage_scales[tl * 16 + g], sc_g8 = stage_scales[tl * 16 + g + 8];
      uint32_t words[4 * vecs];
#pragma unroll
      for (int v = 0; v < vecs; ++v) {
        const ::uint4 q = stage[(tl * vecs + v) * 32 + lane];
        words[4 * v] = q.x, words[4 * v + 1] = q.y, words[4 * v + 2] = q.z, words[4 * v + 3] = q.w;
      }
      uint32_t bias_g, bias_g8;
      dequant_biases<Bits, Kind, bf16>(sc_g, sc_g8, bias_g, bias_g8);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t a[4];
        dequant<Bits, Kind, bf16>(a, words, j, bias_g, bias_g8, lane_table);
#pragma unroll
        for (int mt = 0; mt < MTiles; ++mt) {
          const uint32_t* xw = reinterpret_cast<const uint32_t*>(&x_now[mt][0]);
          mma_16816<bf16>(part[mt][tl], a, xw[2 * j], xw[2 * j + 1]);
        }
        if constexpr (mx) {
          if (j % 2 == 1)  // end of an MX block (block j / 2 of the chunk)
            flush_group(acc, part, tl, mx_block_scale(sc_g, j / 2), mx_block_scale(sc_g8, j / 2));
        }
      }
      // End of a group (or of this warp's range): scale the group's partial sums into acc.
      if (!mx && flush) {
        flush_group(acc, part, tl, group_scale<Kind>(sc_g), group_scale<Kind>(sc_g8));
      }
    }
  };
  // Two chunks an iteration, the activation registers swapping roles (no copies).
  for (int step = 0; step < steps; step += 2) {
    chunk_step(step, xv, xn);
    if (step + 1 < steps) chunk_step(step + 1, xn, xv);
  }
  cp_async_wait<0>();

  // Reduce the warps' partial sums and store fp16 / bf16.
  static_assert(MTiles * Tiles * 4 * Warps * 32 * 4 <= layout::bytes, "the reduction reuses the ring");
  reduce_warps<MTiles, Tiles, Warps>(acc, reinterpret_cast<float*>(smem), warp, lane, tile0, n, m,
                                     [&](int row, int col, float sum) {
                                       if constexpr (bf16) y[(size_t)col * ldy + row] = __float2bfloat16(sum);
                                       else y[(size_t)col * ldy + row] = __float2half(sum);
                                     });
}

/// A kernel instantiation and its shared-memory size.
template <class T, int Bits, dequant_kind Kind, int MTiles, int Tiles, bool KTail, int Warps = gemm_warps>
struct gemm_config {
  // 8 stages of 4-bit codes a warp (4 of 8-bit); with 4 tiles and 16 warps 3 (2 of 8-bit: 3 stages
  // measured the same as 4 for int4 at M=1 and 6% faster for MXFP4); fewer if they do not fit
  // shared memory; the activations staged in them when that leaves 3 stages,
  // up to 8 rows, or 16 with 4 tiles (with 1 or 2 tiles their 2.3 KB a stage cost more stages
  // than their latency costs: M=16, 2 tiles, 20.5 -> 22.8 us). More stages were slower on an H100
  // (4 tiles, 16 warps: 5 stages with one row of x for M=1, 16.7 -> 20.0 us; int8 3 instead of 2
  // stages, 27.6 -> 29.4 us). 12 warps (codebook formats, whose 32 KB table leaves 16 warps too few
  // stages): 3 stages with 4 tiles, 6 with 1 or 2, the chunks in flight of 16 warps. int4 + zero
  // points (fp16) at M = 9..16 with 2 tiles and 16 warps (x not staged): 6 stages, fewer chunks in
  // flight than 8 and faster (H100, 4096 x 14336 M=16, the same binary: 8 stages 18.4 us, 6 17.5,
  // 12 20.5); the other formats at this shape were not timed with 6, so they keep 8.
  static constexpr bool int4_m16_2x16 = std::is_same<T, __half>::value && Bits == 4 && Kind == dequant_kind::integer &&
                                        MTiles == 2 && Tiles == 2 && Warps == 16;
  static constexpr int want = Tiles == 4 && Warps >= 12 ? (Bits == 8 ? 2 : 3)
                              : Warps == 12             ? 6
                              : int4_m16_2x16           ? 6
                                                        : (Bits == 8 ? 4 : 8);
  static constexpr int stage_rows = 8 * MTiles;
  static constexpr int x_rows =
      (MTiles == 1 || Tiles == 4) && fit_stages<Bits, Kind, Tiles, want, Warps, stage_rows>() >= 3 ? stage_rows : 0;
  static constexpr int stages = fit_stages<Bits, Kind, Tiles, want, Warps, x_rows>();
  using layout = gemm_smem<Bits, Kind, Tiles, stages, Warps, x_rows>;
  static constexpr auto kernel = gemm_kernel<T, Bits, Kind, MTiles, Tiles, stages, KTail, Warps, x_rows>;
  static constexpr auto dependent_kernel = gemm_kernel<T, Bits, Kind, MTiles, Tiles, stages, KTail, Warps, x_rows, true>;
};

template <class T, int Bits, dequant_kind Kind, int MTiles, int Tiles, bool KTail, int Warps = gemm_warps>
void launch(const T* x, int m, int ldx, const ::uint4* codes, const uint32_t* scales, code_table table, int n,
            int k, int chunks, int cpg, int groups, int tiles, T* y, int ldy, cudaStream_t stream, bool dependent) {
  using config = gemm_config<T, Bits, Kind, MTiles, Tiles, KTail, Warps>;
  const auto run = [&](auto kernel) {
    // Set on every call (a cheap driver call): the limit belongs to the current device.
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(config::layout::bytes)));
    const int blocks = (tiles + Tiles - 1) / Tiles;
    launch_kernel(kernel, dim3(blocks), dim3(Warps * 32), config::layout::bytes, stream, dependent, 0, x, m, ldx, codes, scales,
                  table, n, k, chunks, cpg, groups, y, ldy);
  };
  if (dependent) run(config::dependent_kernel);
  else run(config::kernel);
}

/// The M = 17..64 kernel (gemm_wide_kernel). At these M each mma.sync of a weight tile serves up
/// to 8 of x's 8-row tiles, so x is no longer small: the M <= 16 kernel, whose warps split K, would
/// read all of x once for every block (4x the weights' L2 traffic at M = 64). Here the warps of a
/// block split N (Tiles tiles each) and share one copy of each chunk of x in shared memory; the
/// blocks split K (blockIdx.y) to fill the multiprocessors, and the last block of each split set
/// sums the fp32 partials in a fixed order (deterministic) and stores the outputs.
///
/// Shared memory: the table (if any), then a block-wide ring of Stages stages. A stage holds the
/// chunk's activations (8 MTiles rows of 64, padded to 144 bytes as in gemm_smem: conflict-free
/// 16-byte reads), then for each warp its Tiles tiles of codes and 16 scale words a tile.
template <int Bits, dequant_kind Kind, int MTiles, int Tiles, int Warps, int Stages>
struct wide_smem {
  static constexpr int table_vecs = Kind == dequant_kind::table ? 256 * 32 / 4 : 0;  // 16-byte units
  static constexpr int x_row_vecs = 9;
  static constexpr int x_vecs = MTiles * 8 * x_row_vecs;
  static constexpr int warp_code_vecs = Tiles * (Bits / 4) * 32;
  static constexpr int warp_vecs = warp_code_vecs + Tiles * 4;
  static constexpr int stage_vecs = x_vecs + Warps * warp_vecs;
  static constexpr std::size_t bytes = 16u * (table_vecs + Stages * stage_vecs);
};
template <int Bits, dequant_kind Kind, int MTiles, int Tiles, int Warps, int Want>
constexpr int fit_wide_stages() {
  if constexpr (Want <= 2 || wide_smem<Bits, Kind, MTiles, Tiles, Warps, Want>::bytes <= 227u * 1024u) return Want;
  else return fit_wide_stages<Bits, Kind, MTiles, Tiles, Warps, Want - 1>();
}

/// Grid: (ceil(tiles / (Warps x Tiles)), splits). Block (bx, s) computes rows bx x Warps x Tiles x 16
/// .. + Warps x Tiles x 16 over chunks s x split_chunks .. + split_chunks (each split has >= 1 chunk).
/// splits > 1: each block leaves its fp32 sums in partials ([bx][s][warp][value][lane]) and counts
/// itself in counters[bx] (zero before the launch; the last block sets it back to zero).
template <class T, int Bits, dequant_kind Kind, int MTiles, int Tiles, int Warps, int Stages>
__global__ void __launch_bounds__(Warps * 32, 1)
    gemm_wide_kernel(const T* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                     const uint32_t* __restrict__ scales, code_table table, int n, int k, int tiles,
                     int chunks, int chunks_per_group, int groups, int split_chunks, float* __restrict__ partials,
                     unsigned* __restrict__ counters, T* __restrict__ y, int ldy) {
  constexpr bool bf16 = is_bf16<T>;
  constexpr bool mx = Kind == dequant_kind::mxfp4;  // lane t's k: see gemm_kernel
  using layout = wide_smem<Bits, Kind, MTiles, Tiles, Warps, Stages>;
  constexpr int vecs = Bits / 4, threads = Warps * 32;
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int split = blockIdx.y;
  const int c0 = split * split_chunks, steps = min(chunks - c0, split_chunks);
  const int tile0 = (blockIdx.x * Warps + warp) * Tiles;  // this warp's first tile
  uint32_t* table_smem = reinterpret_cast<uint32_t*>(smem);
  ::uint4* ring = smem + layout::table_vecs;

  // The copy issue walks the split's chunks in order, so its sources are pointers advanced by a
  // chunk per issue and the scale group a count-down: no index math per chunk (the issue was 114
  // of the 417 instructions a warp spent on a chunk at M = 64).
  const int group0 = c0 / chunks_per_group;
  // Tiles past the matrix (the last block's) read the last tile: the warps stay in step for the
  // block's barriers, and their rows (>= n) are never stored.
  const ::uint4* code_src[Tiles];
#pragma unroll
  for (int tl = 0; tl < Tiles; ++tl)
    code_src[tl] = codes + ((size_t)min(tile0 + tl, tiles - 1) * chunks + c0) * vecs * 32 + lane;
  // Lane 4 tl + q (< 4 Tiles) copies quarter q of tile tl's 16 scale words.
  const ::uint4* scale_src = reinterpret_cast<const ::uint4*>(scales) +
                             ((size_t)min(tile0 + (lane >> 2) % Tiles, tiles - 1) * groups + group0) * 4 + (lane & 3);
  int issue_left = (group0 + 1) * chunks_per_group - c0;  // chunks of the scale group left to issue
  // x: rows 0 .. m - 1 at k = c * 64 .. + 64, piece i of this thread is 16 bytes of row r.
  constexpr int x_pieces = (MTiles * 64 + threads - 1) / threads;
  const T* x_src[x_pieces];
  unsigned x_dst[x_pieces];
  bool x_on[x_pieces];
  int x_k[x_pieces];
#pragma unroll
  for (int i = 0; i < x_pieces; ++i) {
    const int idx = threadIdx.x + i * threads, r = idx >> 3, piece = idx & 7;
    x_on[i] = r < m && r < MTiles * 8;
    x_src[i] = x + (size_t)min(r, m - 1) * ldx + c0 * 64 + piece * 8;
    x_dst[i] = 16u * (r * layout::x_row_vecs + piece);
    x_k[i] = c0 * 64 + piece * 8;
  }
  const bool k_tail = (k & 63) != 0;  // x's last chunk zero-filled past K
  const unsigned ring_at = static_cast<unsigned>(__cvta_generic_to_shared(ring));
  constexpr unsigned stage_bytes = 16u * layout::stage_vecs;
  unsigned issue_stage = 0;  // byte offset of the stage the next issue fills
  int issued = 0;
  const uint64_t read_once = l2_evict_first();  // the codes and scales: read once (see gemm_kernel)
  const auto issue = [&]() {  // the split's next chunk; always commits a group (empty past the end)
    if (issued < steps) {
      const unsigned stage = ring_at + issue_stage, mine = stage + 16u * (layout::x_vecs + warp * layout::warp_vecs);
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl) {
#pragma unroll
        for (int v = 0; v < vecs; ++v)
          cp_async16_hint_at(mine + 16u * ((tl * vecs + v) * 32 + lane), code_src[tl] + v * 32, read_once);
        code_src[tl] += vecs * 32;
      }
      if (lane < 4 * Tiles) cp_async16_hint_at(mine + 16u * (layout::warp_code_vecs + lane), scale_src, read_once);
      if (--issue_left == 0) scale_src += 4, issue_left = chunks_per_group;
      // Past K zeros (the padded codes decode to -zero, not 0).
#pragma unroll
      for (int i = 0; i < x_pieces; ++i) {
        if (x_on[i]) {
          if (k_tail) cp_async16_fill_at(stage + x_dst[i], x_k[i] < k ? x_src[i] : x, 2 * max(0, min(8, k - x_k[i])));
          else cp_async16_at(stage + x_dst[i], x_src[i]);
        }
        x_src[i] += 64;
        x_k[i] += 64;
      }
      issue_stage = issue_stage + stage_bytes == Stages * stage_bytes ? 0u : issue_stage + stage_bytes;
      ++issued;
    }
    cp_async_commit();
  };

  // Two chunks a barrier: each __syncthreads waits for two stages and releases two, so the warps
  // drift apart within a pair (one a chunk, with the same 8 stages, measured 0.4-1.2 us slower at
  // M = 32 and 64 on an H100; three or four a barrier no faster than two).
  constexpr int per_barrier = 2;
  static_assert(Stages >= 2 * per_barrier, "gemm_wide_kernel: a ring of at least two barriers' chunks");
#pragma unroll
  for (int s = 0; s < Stages - per_barrier; ++s) issue();
  if constexpr (Kind == dequant_kind::table) fill_table<threads>(table_smem, table);  // the loop's first barrier
  const uint32_t* lane_table = table_smem + lane;

  float acc[MTiles][Tiles][4] = {}, part[MTiles][Tiles][4] = {};
  // This lane's activation rows in a stage (rows past m read row m - 1: their outputs are not stored).
  int x_row[MTiles];
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt) x_row[mt] = min(mt * 8 + g, m - 1) * layout::x_row_vecs;

  int read_stage = 0, left = (group0 + 1) * chunks_per_group - c0;  // the stage computed next; chunks left in its group
  for (int step = 0; step < steps; ++step) {
    if (step % per_barrier == 0) {
      cp_async_wait<Stages - 2 * per_barrier>();
      __syncthreads();  // the stages' x came from every warp; and all are done with the stages refilled next
#pragma unroll
      for (int j = 0; j < per_barrier; ++j) issue();
    }
    const ::uint4* stage = ring + read_stage;
    read_stage = read_stage + layout::stage_vecs == Stages * layout::stage_vecs ? 0 : read_stage + layout::stage_vecs;
    const ::uint4* mine = stage + layout::x_vecs + warp * layout::warp_vecs;
    const uint32_t* stage_scales = reinterpret_cast<const uint32_t*>(mine + layout::warp_code_vecs);
    const bool flush = --left == 0 || step + 1 == steps;
    if (left == 0) left = chunks_per_group;

    uint32_t words[Tiles][4 * vecs], sc_g[Tiles], sc_g8[Tiles], bias_g[Tiles], bias_g8[Tiles];
    load_chunk_tiles<Bits, Kind, bf16>(mine, stage_scales, lane, g, words, sc_g, sc_g8, bias_g, bias_g8);
    // Two halves of the chunk (mmas 2h, 2h + 1; for MXFP4 one block each): the tiles' A fragments
    // are made once and serve every 8-row tile of x, whose B fragments are one 16-byte read each.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t a[Tiles][2][4];
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) dequant<Bits, Kind, bf16>(a[tl][jj], words[tl], 2 * h + jj, bias_g[tl], bias_g8[tl], lane_table);
      // XGroup x tiles at a time, each mma's first half for all of them, then the second half: the
      // mmas in a row are independent. (With the two halves back to back per x tile the second
      // waited for the first; 8 warps an SM cannot hide that: 86 us at M = 64, one mma per ~9
      // cycles an SM.)
      constexpr int XGroup = MTiles % 4 == 0 ? 4 : MTiles % 3 == 0 ? 3 : MTiles;
#pragma unroll
      for (int m0 = 0; m0 < MTiles; m0 += XGroup) {
        ::uint4 xq[XGroup];
#pragma unroll
        for (int i = 0; i < XGroup; ++i) xq[i] = stage[x_row[m0 + i] + (mx ? 4 * h + t : 2 * t + h)];
#pragma unroll
        for (int i = 0; i < XGroup; ++i)
#pragma unroll
          for (int tl = 0; tl < Tiles; ++tl) mma_16816<bf16>(part[m0 + i][tl], a[tl][0], xq[i].x, xq[i].y);
#pragma unroll
        for (int i = 0; i < XGroup; ++i)
#pragma unroll
          for (int tl = 0; tl < Tiles; ++tl) mma_16816<bf16>(part[m0 + i][tl], a[tl][1], xq[i].z, xq[i].w);
      }
      if constexpr (mx) {  // end of MX block h
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl) flush_group(acc, part, tl, mx_block_scale(sc_g[tl], h), mx_block_scale(sc_g8[tl], h));
      }
    }
    if (!mx && flush) {
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl) flush_group(acc, part, tl, group_scale<Kind>(sc_g[tl]), group_scale<Kind>(sc_g8[tl]));
    }
  }
  cp_async_wait<0>();

  wide_store<MTiles, Tiles, Warps>(acc, partials, counters, warp, lane, tile0, n, m, y, ldy);
}

/// The wide kernel's instantiation: 8 warps of 2 tiles or 16 warps of 1 (256 rows a block either
/// way; x read once per 256 rows and chunk); 8 stages of 4-bit codes (6 of 8-bit), fewer if they
/// do not fit: with two chunks a barrier, 4 (3) chunks in flight while two are computed.
template <class T, int Bits, dequant_kind Kind, int MTiles, int Warps = 8>
struct wide_config {
  static constexpr int tiles = Warps == 8 ? 2 : 1, warps = Warps;
  static constexpr int stages = fit_wide_stages<Bits, Kind, MTiles, tiles, warps, Bits == 8 ? 6 : 8>();
  using layout = wide_smem<Bits, Kind, MTiles, tiles, warps, stages>;
  static constexpr auto kernel = gemm_wide_kernel<T, Bits, Kind, MTiles, tiles, warps, stages>;
  static constexpr int rows_per_block = tiles * warps * 16;
};

template <class T, int Bits, dequant_kind Kind, int MTiles, int Warps>
void launch_wide(const T* x, int m, int ldx, const ::uint4* codes, const uint32_t* scales, code_table table, int n,
                 int k, int tiles, int chunks, int cpg, int groups, int split_chunks, int splits, float* partials,
                 unsigned* counters, T* y, int ldy, cudaStream_t stream) {
  using config = wide_config<T, Bits, Kind, MTiles, Warps>;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(config::kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(config::layout::bytes)));
  const dim3 grid((n + config::rows_per_block - 1) / config::rows_per_block, splits);
  config::kernel<<<grid, config::warps * 32, config::layout::bytes, stream>>>(
      x, m, ldx, codes, scales, table, n, k, tiles, chunks, cpg, groups, split_chunks, partials, counters, y, ldy);
}

/// M = 17..64: the wide kernel with 8 MTiles rows of x, MTiles = 4, 6 or 8, and 8 warps of 2 tiles
/// or 16 of 1 (options.warps); split K as options says (default: the blocks along N times the
/// splits about one an SM; each split >= 1 chunk).
template <class Scheme, class T>
void gemm_wide(const T* x, int m, int ldx, const packed_view<Scheme>& w, T* y, int ldy, cudaStream_t stream,
               const gemm_options& options) {
  constexpr int bits = Scheme::bits;
  constexpr dequant_kind kind = gpu_scheme<Scheme>::kind;
  const int n = static_cast<int>(w.rows), chunks = static_cast<int>(w.chunks);
  constexpr int rows_per_block = wide_config<T, bits, kind, 8>::rows_per_block;
  const int blocks_n = (n + rows_per_block - 1) / rows_per_block;
  const int warps = options.warps ? options.warps : 8;
  LOWBIT_CHECK(warps == 8 || warps == 16, "cuda::gemm: warps=" << warps << " must be 8 or 16");
  const int mtiles = (m + 15) / 16 * 2;
  const wide_split split("cuda::gemm", chunks, blocks_n, 1, std::size_t(rows_per_block) * mtiles * 8, options, stream);
  const auto run = [&](auto launcher) {
    launcher(x, m, ldx, w.codes, w.scales, w.table[is_bf16<T>], n, static_cast<int>(w.cols), static_cast<int>(w.tiles()), chunks,
             static_cast<int>(w.chunks_per_group), static_cast<int>(w.groups), split.split_chunks, split.splits, split.partials,
             split.counters, y, ldy, stream);
  };
  if (warps == 16) {
    if (mtiles == 4) run(launch_wide<T, bits, kind, 4, 16>);
    else if (mtiles == 6) run(launch_wide<T, bits, kind, 6, 16>);
    else run(launch_wide<T, bits, kind, 8, 16>);
  } else {
    if (mtiles == 4) run(launch_wide<T, bits, kind, 4, 8>);
    else if (mtiles == 6) run(launch_wide<T, bits, kind, 6, 8>);
    else run(launch_wide<T, bits, kind, 8, 8>);
  }
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace detail

/// y[m x N] = x[m x K] · Wᵀ, fp16 or bf16 (T = __half or __nv_bfloat16) in and out, on `stream`
/// (asynchronous). With bf16 the weights are dequantized to bf16 and the mma is the bf16 one.
/// Preconditions, checked: 1 <= m < 2^31 (and the output blocks of M > 64 < 2^31); x, y device pointers; x 16-byte aligned with ldx >= K and
/// ldx % 8 == 0; ldy >= N; options as gemm_options says (12 and 16 warps are used only when K % 64 == 0).
/// y must not overlap x. The packed weights must live on the current device. M = 17..64 splits K
/// across blocks and needs scratch: options.workspace, or per call from cudaMallocAsync; so does
/// M > 64 (gemm_large.cuh) when its output blocks are fewer than the SMs. M > 64 on sm_90a code runs the
/// wgmma kernel (gemm_wgmma.cuh) unless options.warps is set or the format is MXFP4; so does M = 33..64.
/// M <= 16 with options.dependent_launch: launched as a programmatic dependent of the stream's
/// previous kernel (gemm_options; on sm_90 it copies its first weight stages while that kernel finishes).
template <class Scheme, class T>
void gemm(const T* x, std::size_t m, std::size_t ldx, const packed_view<Scheme>& w, T* y, std::size_t ldy,
          cudaStream_t stream = nullptr, gemm_options options = {}) {
  static_assert(std::is_same<T, __half>::value || detail::is_bf16<T>, "cuda::gemm: fp16 (__half) or bf16 (__nv_bfloat16) activations");
  using gs = gpu_scheme<Scheme>;
  LOWBIT_CHECK(m >= 1 && m < (std::size_t(1) << 31), "cuda::gemm: m=" << m << " must be in [1, 2^31)");
  LOWBIT_CHECK(w.codes != nullptr && w.scales != nullptr, "cuda::gemm: the packed weights are empty");
  LOWBIT_CHECK(ldx >= w.cols && ldx % 8 == 0, "cuda::gemm: ldx=" << ldx << " must be >= K=" << w.cols << " and a multiple of 8");
  LOWBIT_CHECK(reinterpret_cast<std::uintptr_t>(x) % 16 == 0, "cuda::gemm: x must be 16-byte aligned");
  LOWBIT_CHECK(ldy >= w.rows, "cuda::gemm: ldy=" << ldy << " must be >= N=" << w.rows);
  LOWBIT_CHECK(ldx < (std::size_t(1) << 31) && ldy < (std::size_t(1) << 31), "cuda::gemm: ldx=" << ldx << ", ldy=" << ldy << " must be < 2^31");
  const int tiles = static_cast<int>(w.tiles());
  constexpr int bits = Scheme::bits;
  constexpr dequant_kind kind = gs::kind;
  if (m > 64) {
    detail::gemm_large(x, static_cast<int>(m), static_cast<int>(ldx), w, y, static_cast<int>(ldy), stream, options);
    return;
  }
  if (m > 16) {
    if constexpr (kind != dequant_kind::mxfp4) {
      if (m > 32 && detail::gemm_wgmma_takes<Scheme>(options)) {  // sm_90a: the wgmma kernel, 64-token blocks
        detail::gemm_wgmma_with<64, 6>(x, static_cast<int>(m), static_cast<int>(ldx), w, y, static_cast<int>(ldy), stream, options);
        return;
      }
    }
    detail::gemm_wide(x, static_cast<int>(m), static_cast<int>(ldx), w, y, static_cast<int>(ldy), stream, options);
    return;
  }
  int per_block = options.tiles_per_block, warps = options.warps;
  // Measured on an H100 (bench/cuda): at these sizes the warps' instruction streams, not HBM, set
  // the pace, so more tiles a warp (activations, table set-up and loop overhead shared) win while
  // the blocks still cover the SMs: 4 tiles and 16 warps when that leaves >= 0.9 blocks an SM
  // (N >= ~7700), else 2 tiles; and about 2048 warps in all (16 a block when the blocks are fewer
  // than 1.5 per SM). Codebook formats (NF4, SF4) with 4 tiles at M > 8 take 12 warps: with 16
  // their 32 KB table leaves no room for the staged activations (28.0 -> 20.1 us, 8192 x 8192).
  constexpr bool table = kind == dequant_kind::table;
  const int sms = (per_block == 0 || warps == 0) ? detail::sm_count() : 0;
  if (per_block == 0) {
    if (tiles % 4 == 0 && w.cols % chunk_cols == 0 && 10 * (tiles / 4) >= 9 * sms)
      per_block = 4, warps = warps ? warps : table && m > 8 ? 12 : 16;
    else
      per_block = tiles % 2 == 0 ? 2 : 1;
  }
  if (warps == 0) warps = (tiles + per_block - 1) / per_block < 3 * sms / 2 ? 16 : 8;
  LOWBIT_CHECK(warps == 8 || warps == 16 || (table && warps == 12),
               "cuda::gemm: warps=" << warps << " must be 8 or 16 (or 12 for codebook formats)");
  LOWBIT_CHECK(per_block == 1 || (per_block == 2 && tiles % 2 == 0) ||
                   (per_block == 4 && tiles % 4 == 0 && w.cols % chunk_cols == 0),
               "cuda::gemm: tiles_per_block=" << per_block << " must be 1, 2 with an even tile count (" << tiles
                                              << "), or 4 with a tile count divisible by 4 and K % 64 == 0");
  const auto args = [&](auto launcher) {
    launcher(x, static_cast<int>(m), static_cast<int>(ldx), w.codes, w.scales, w.table[detail::is_bf16<T>], static_cast<int>(w.rows),
             static_cast<int>(w.cols), static_cast<int>(w.chunks), static_cast<int>(w.chunks_per_group),
             static_cast<int>(w.groups), tiles, y, static_cast<int>(ldy), stream, options.dependent_launch);
  };
  const int variant = (m > 8 ? 4 : 0) + (per_block == 2 ? 2 : 0) + (w.cols % chunk_cols ? 1 : 0) +
                      (warps == 16 && w.cols % chunk_cols == 0 ? 8 : 0);
  if constexpr (table) {
    if (warps == 12 && w.cols % chunk_cols == 0) {
      if (per_block == 4) m <= 8 ? args(detail::launch<T, bits, kind, 1, 4, false, 12>) : args(detail::launch<T, bits, kind, 2, 4, false, 12>);
      else if (per_block == 2) m <= 8 ? args(detail::launch<T, bits, kind, 1, 2, false, 12>) : args(detail::launch<T, bits, kind, 2, 2, false, 12>);
      else m <= 8 ? args(detail::launch<T, bits, kind, 1, 1, false, 12>) : args(detail::launch<T, bits, kind, 2, 1, false, 12>);
      LOWBIT_CUDA_CHECK(cudaGetLastError());
      return;
    }
  }
  if (per_block == 4) {
    if (warps == 16) {
      if (m <= 8) args(detail::launch<T, bits, kind, 1, 4, false, 16>);
      else args(detail::launch<T, bits, kind, 2, 4, false, 16>);
    } else {
      if (m <= 8) args(detail::launch<T, bits, kind, 1, 4, false, 8>);
      else args(detail::launch<T, bits, kind, 2, 4, false, 8>);
    }
    LOWBIT_CUDA_CHECK(cudaGetLastError());
    return;
  }
  switch (variant) {
    case 8: args(detail::launch<T, bits, kind, 1, 1, false, 16>); break;
    case 10: args(detail::launch<T, bits, kind, 1, 2, false, 16>); break;
    case 12: args(detail::launch<T, bits, kind, 2, 1, false, 16>); break;
    case 14: args(detail::launch<T, bits, kind, 2, 2, false, 16>); break;
    case 0: args(detail::launch<T, bits, kind, 1, 1, false>); break;
    case 1: args(detail::launch<T, bits, kind, 1, 1, true>); break;
    case 2: args(detail::launch<T, bits, kind, 1, 2, false>); break;
    case 3: args(detail::launch<T, bits, kind, 1, 2, true>); break;
    case 4: args(detail::launch<T, bits, kind, 2, 1, false>); break;
    case 5: args(detail::launch<T, bits, kind, 2, 1, true>); break;
    case 6: args(detail::launch<T, bits, kind, 2, 2, false>); break;
    case 7: args(detail::launch<T, bits, kind, 2, 2, true>); break;
    default: LOWBIT_CHECK(false, "cuda::gemm: no kernel for variant " << variant);
  }
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace lowbit
