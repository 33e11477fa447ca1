/// \file
/// \brief cuda::gemm: weight-only low-bit GEMM y = x · Wᵀ for small M (1..16), fp16 activations, on tensor cores.
///
/// The GEMV regime is memory-bound: the kernel's job is to stream the packed weights at HBM
/// bandwidth and keep dequantization off the critical path. Design (see packed_weights.cuh):
///  - Swapped operands: W's tile of 16 outputs is mma.m16n8k16's A (16 x 16), xᵀ its B (16 x 8), so
///    M = 1..8 costs one mma per 16 x 16 weights and M = 9..16 two; padding M to 8 costs nothing
///    that matters (the tensor cores idle at these sizes anyway).
///  - A warp streams one tile of 16 rows (or two) over a range of K with 16-byte loads, several
///    chunks in flight; the 8 warps of a block split K and reduce through shared memory at the end.
///  - Dequantization in registers, without the scale: integers by the magic number (code | 0x6400 is
///    the fp16 1024 + code; hsub2 of 1024 + zero gives code - zero exactly); 4-bit codebook / float
///    formats by a 256-entry byte -> half2 table in shared memory, replicated per lane (bank =
///    lane, so conflict-free). The group scale multiplies the fp32 partial sums of each group, once
///    per group and row, instead of every weight.
/// Numerics: products on tensor cores with fp32 accumulation; weight values exact in fp16 for
/// integer formats and fp4_e2m1, rounded to fp16 (2^-11 relative) for NF4 / SF4 tables; the
/// output rounded to fp16. Tolerance against float64 (tests/cuda): 2^-10 |y| + 2^-10 Σ|x_k w_k|.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "packed_weights.cuh"

namespace lowbit {
namespace cuda {

namespace detail {

inline constexpr int gemm_warps = 8;

__device__ __forceinline__ ::uint4 load_stream(const ::uint4* p) {
  // Weights are read once per GEMM: skip L1.
  ::uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t hsub2_bits(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("sub.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

/// The A fragment of subtile j from a lane's codes (words: 4 for 4-bit, 8 for 8-bit).
/// bias_g / bias_g8: half2(1024 + zero) of rows g and g + 8 (integer kinds).
template <int Bits, dequant_kind Kind>
__device__ __forceinline__ void dequant(uint32_t (&a)[4], const uint32_t* words, int j, uint32_t bias_g,
                                        uint32_t bias_g8, const uint32_t* lane_table) {
  if constexpr (Bits == 8) {
    const uint32_t w0 = words[2 * j], w1 = words[2 * j + 1];
    a[0] = hsub2_bits(__byte_perm(w0, 0x64646464u, 0x4140), bias_g);
    a[1] = hsub2_bits(__byte_perm(w0, 0x64646464u, 0x4342), bias_g8);
    a[2] = hsub2_bits(__byte_perm(w1, 0x64646464u, 0x4140), bias_g);
    a[3] = hsub2_bits(__byte_perm(w1, 0x64646464u, 0x4342), bias_g8);
  } else if constexpr (Kind == dequant_kind::integer) {
    const uint32_t w = words[j];
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      uint32_t h;
      asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(h) : "r"(w >> (4 * p)), "r"(0x000f000fu), "r"(0x64006400u));
      a[p] = hsub2_bits(h, (p & 1) ? bias_g8 : bias_g);
    }
  } else {
    const uint32_t w = words[j];
#pragma unroll
    for (int p = 0; p < 4; ++p) a[p] = lane_table[__byte_perm(w, 0, 0x4440 + p) << 5];
  }
}

/// One block: Tiles tiles of 16 rows; its 8 warps split K. MTiles = ceil(M / 8); Depth chunks of
/// loads in flight per warp and tile.
template <int Bits, dequant_kind Kind, int MTiles, int Tiles, int Depth>
__global__ void __launch_bounds__(gemm_warps * 32)
    gemm_kernel(const __half* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                const uint32_t* __restrict__ scales, const uint32_t* __restrict__ table, int n, int k, int chunks,
                int chunks_per_group, int groups, __half* __restrict__ y, int ldy) {
  extern __shared__ uint32_t smem[];
  constexpr int vecs = Bits / 4;  // 16-byte code vectors per lane and chunk
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int tile0 = blockIdx.x * Tiles;

  if constexpr (Kind == dequant_kind::table) {
    for (int i = threadIdx.x; i < 256 * 32; i += blockDim.x) smem[i] = __ldg(table + (i >> 5));
    __syncthreads();
  }
  const uint32_t* lane_table = smem + lane;

  // This warp's chunks: whole steps of Depth, split evenly over the warps.
  const int steps = (chunks + Depth - 1) / Depth;
  const int c_begin = (warp * steps / gemm_warps) * Depth;
  const int c_end = min(chunks, ((warp + 1) * steps / gemm_warps) * Depth);

  float acc[MTiles][Tiles][4] = {}, part[MTiles][Tiles][4] = {};
  for (int c0 = c_begin; c0 < c_end; c0 += Depth) {
    ::uint4 q[Depth][Tiles][vecs];
    ::uint4 xv[Depth][MTiles][2];
    uint32_t sc[Depth][Tiles][2];
#pragma unroll
    for (int d = 0; d < Depth; ++d) {
      const int c = c0 + d;
      if (c < c_end) {
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl) {
          const ::uint4* base = codes + ((size_t)(tile0 + tl) * chunks + c) * vecs * 32 + lane;
#pragma unroll
          for (int v = 0; v < vecs; ++v) q[d][tl][v] = load_stream(base + v * 32);
          const uint32_t* s = scales + ((size_t)(tile0 + tl) * groups + c / chunks_per_group) * 16 + g;
          sc[d][tl][0] = __ldg(s);
          sc[d][tl][1] = __ldg(s + 8);
        }
        const int kx = c * 64 + 16 * t;
#pragma unroll
        for (int mt = 0; mt < MTiles; ++mt) {
          const int row = mt * 8 + g;
          xv[d][mt][0] = xv[d][mt][1] = make_uint4(0, 0, 0, 0);
          if (row < m) {
            const __half* xr = x + (size_t)row * ldx + kx;
            if (kx + 16 <= k) {
              xv[d][mt][0] = __ldg(reinterpret_cast<const ::uint4*>(xr));
              xv[d][mt][1] = __ldg(reinterpret_cast<const ::uint4*>(xr) + 1);
            } else {
              __half tail[16];
#pragma unroll
              for (int i = 0; i < 16; ++i) tail[i] = kx + i < k ? xr[i] : __float2half(0.0f);
              xv[d][mt][0] = *reinterpret_cast<const ::uint4*>(tail);
              xv[d][mt][1] = *reinterpret_cast<const ::uint4*>(tail + 8);
            }
          }
        }
      }
    }
#pragma unroll
    for (int d = 0; d < Depth; ++d) {
      const int c = c0 + d;
      if (c >= c_end) break;
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl) {
        const uint32_t bias_g = __byte_perm(sc[d][tl][0], 0, 0x3232), bias_g8 = __byte_perm(sc[d][tl][1], 0, 0x3232);
        const uint32_t* words = reinterpret_cast<const uint32_t*>(&q[d][tl][0]);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          uint32_t a[4];
          dequant<Bits, Kind>(a, words, j, bias_g, bias_g8, lane_table);
#pragma unroll
          for (int mt = 0; mt < MTiles; ++mt) {
            const uint32_t* xw = reinterpret_cast<const uint32_t*>(&xv[d][mt][0]);
            mma_16816(part[mt][tl], a, xw[2 * j], xw[2 * j + 1]);
          }
        }
      }
      // End of a group (or of this warp's range): scale the group's partial sums into acc.
      if ((c + 1) % chunks_per_group == 0 || c + 1 == c_end) {
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl) {
          const float s_g = __low2float(*reinterpret_cast<const __half2*>(&sc[d][tl][0]));
          const float s_g8 = __low2float(*reinterpret_cast<const __half2*>(&sc[d][tl][1]));
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
  }

  // Reduce the warps' partial sums ([value][warp][lane]: conflict-free) and store fp16.
  constexpr int values = MTiles * Tiles * 4;
  float* red = reinterpret_cast<float*>(smem);
  if constexpr (Kind == dequant_kind::table) __syncthreads();  // the table region is reused
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
      for (int i = 0; i < 4; ++i) red[(((mt * Tiles + tl) * 4 + i) * gemm_warps + warp) * 32 + lane] = acc[mt][tl][i];
  __syncthreads();
  for (int idx = threadIdx.x; idx < values * 32; idx += blockDim.x) {
    const int v = idx >> 5, l = idx & 31;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < gemm_warps; ++w) sum += red[(v * gemm_warps + w) * 32 + l];
    const int i = v & 3, tl = (v >> 2) % Tiles, mt = (v >> 2) / Tiles;
    const int row = (tile0 + tl) * 16 + (l >> 2) + 8 * (i >> 1);
    const int col = mt * 8 + 2 * (l & 3) + (i & 1);
    if (row < n && col < m) y[(size_t)col * ldy + row] = __float2half(sum);
  }
}

template <int Bits, dequant_kind Kind, int MTiles, int Tiles, int Depth>
void launch(const __half* x, int m, int ldx, const ::uint4* codes, const uint32_t* scales, const uint32_t* table, int n,
            int k, int chunks, int cpg, int groups, int tiles, __half* y, int ldy, cudaStream_t stream) {
  const std::size_t reduce = sizeof(float) * MTiles * Tiles * 4 * gemm_warps * 32;
  const std::size_t table_bytes = Kind == dequant_kind::table ? 256 * 32 * 4 : 0;
  const std::size_t shared = reduce > table_bytes ? reduce : table_bytes;
  const int blocks = (tiles + Tiles - 1) / Tiles;
  gemm_kernel<Bits, Kind, MTiles, Tiles, Depth><<<blocks, gemm_warps * 32, shared, stream>>>(
      x, m, ldx, codes, scales, table, n, k, chunks, cpg, groups, y, ldy);
}

}  // namespace detail

/// Launch options; the defaults are what the benchmark found best on an H100.
struct gemm_options {
  int tiles_per_block = 0;  ///< 1 or 2 (rows per block / 16); 0: chosen from the shape
};

/// y[m x N] = x[m x K] · Wᵀ, fp16 in and out, on `stream` (asynchronous).
/// Preconditions, checked: 1 <= m <= 16; x, y device pointers; x 16-byte aligned with ldx >= K and
/// ldx % 8 == 0; ldy >= N; options.tiles_per_block 2 only with an even number of 16-row tiles.
template <class Scheme>
void gemm(const __half* x, std::size_t m, std::size_t ldx, const packed_view<Scheme>& w, __half* y, std::size_t ldy,
          cudaStream_t stream = nullptr, gemm_options options = {}) {
  using gs = gpu_scheme<Scheme>;
  LOWBIT_CHECK(m >= 1 && m <= 16, "cuda::gemm: m=" << m << " must be in [1, 16]");
  LOWBIT_CHECK(w.codes != nullptr && w.scales != nullptr, "cuda::gemm: the packed weights are empty");
  LOWBIT_CHECK(ldx >= w.cols && ldx % 8 == 0, "cuda::gemm: ldx=" << ldx << " must be >= K=" << w.cols << " and a multiple of 8");
  LOWBIT_CHECK(reinterpret_cast<std::uintptr_t>(x) % 16 == 0, "cuda::gemm: x must be 16-byte aligned");
  LOWBIT_CHECK(ldy >= w.rows, "cuda::gemm: ldy=" << ldy << " must be >= N=" << w.rows);
  const int tiles = static_cast<int>(w.tiles());
  int per_block = options.tiles_per_block;
  if (per_block == 0) per_block = 1;
  LOWBIT_CHECK(per_block == 1 || (per_block == 2 && tiles % 2 == 0),
               "cuda::gemm: tiles_per_block=" << per_block << " must be 1, or 2 with an even tile count (" << tiles << ")");
  constexpr int bits = Scheme::bits;
  constexpr dequant_kind kind = gs::kind;
  const auto args = [&](auto launcher) {
    launcher(x, static_cast<int>(m), static_cast<int>(ldx), w.codes, w.scales, w.table, static_cast<int>(w.rows),
             static_cast<int>(w.cols), static_cast<int>(w.chunks), static_cast<int>(w.chunks_per_group),
             static_cast<int>(w.groups), tiles, y, static_cast<int>(ldy), stream);
  };
  if (m <= 8) {
    if (per_block == 1) args(detail::launch<bits, kind, 1, 1, 4>);
    else args(detail::launch<bits, kind, 1, 2, 4>);
  } else {
    if (per_block == 1) args(detail::launch<bits, kind, 2, 1, 4>);
    else args(detail::launch<bits, kind, 2, 2, 2>);
  }
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace lowbit
