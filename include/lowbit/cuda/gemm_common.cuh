/// \file
/// \brief The device helpers and host plumbing that the dense GEMM kernels share (gemm.cuh for M <= 64,
/// gemm_large.cuh for M > 64; sparse24_gemm.cuh and decode.cuh use them through gemm.cuh): mma.sync,
/// the register dequantizers of the packed layout (packed_weights.cuh), cp.async, the scale-group
/// flush, the split-K store, and the launch options / split-K workspace.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "dependent_launch.cuh"
#include "l2_policy.cuh"
#include "packed_weights.cuh"

namespace lowbit {
namespace cuda {
namespace detail {

/// The activation (and output) types: fp16 or bf16.
template <class T>
inline constexpr bool is_bf16 = std::is_same<T, __nv_bfloat16>::value;

/// Four 8 x 8 matrices of 16-bit elements from shared memory (ldmatrix.x4): lane l gives the
/// address of row l % 8 of matrix l / 8 (16 bytes), lane (g, t) gets elements 2t, 2t + 1 of row g
/// of matrix r in r[r].
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], unsigned address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

template <bool BF16 = false>  // the decode kernels (decode.cuh) use the fp16 one
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (BF16)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// bf16x2 bits of (v, v).
__device__ __forceinline__ uint32_t bf16x2_bits(float v) {
  const __nv_bfloat162 b = __float2bfloat162_rn(v);
  return *reinterpret_cast<const uint32_t*>(&b);
}

/// fp16x2 bits to bf16x2 bits (exact for the values dequant makes: integers |v| <= 255 and
/// E2M1 values times 2^-14, all with at most 8 significant bits).
__device__ __forceinline__ uint32_t half2_to_bf162(uint32_t h) {
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
  const __nv_bfloat162 b = __float22bfloat162_rn(f);
  return *reinterpret_cast<const uint32_t*>(&b);
}

/// prmt.b32 as PTX defines it: byte i of the result is byte (c >> 4i) & 7 of the pair (a, b), or,
/// where bit 4i + 3 of c is set, that byte's sign bit repeated (0x00 or 0xff).
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__device__ __forceinline__ uint32_t hsub2_bits(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("sub.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

/// Four pairs of a 4-bit codebook's values from one word of codes (pair p: byte p, low nibble
/// first) and the 8 words of a code_table. prmt indexes 8 bytes by 3 bits, so for 4 codes at a
/// time: their values' low bytes from values 0..7 and from 8..15, one or the other by code bit 3 (a
/// sign-mode prmt of the codes makes the byte mask), the same for the high bytes, then two prmt
/// interleave low and high bytes into two 16-bit pairs. 21 instructions a word, no memory.
__device__ __forceinline__ void table_lookup(uint32_t (&a)[4], uint32_t w, const uint32_t* table) {
  const uint32_t index = w & 0x77777777u, w4 = w << 4;
#pragma unroll
  for (int q = 0; q < 2; ++q) {  // codes 4q .. 4q + 3: nibbles of bytes 2q, 2q + 1
    const uint32_t s = q ? index >> 16 : index;
    // Byte i of the mask: code i's bit 3 repeated (odd nibbles: the sign bit of w's byte; even:
    // of w4's).
    const uint32_t upper = prmt(w, w4, q ? 0xbfaeu : 0x9d8cu);
    const uint32_t lo = (prmt(table[0], table[1], s) & ~upper) | (prmt(table[2], table[3], s) & upper);
    const uint32_t hi = (prmt(table[4], table[5], s) & ~upper) | (prmt(table[6], table[7], s) & upper);
    a[2 * q] = prmt(lo, hi, 0x5140u);
    a[2 * q + 1] = prmt(lo, hi, 0x7362u);
  }
}

/// The block's byte -> pair table (dequant_kind::table) in shared memory: entry b (codes b & 15,
/// b >> 4) at word 32 b + l for each lane l, so that lane l's lookups all hit bank l. Made in
/// registers from the code_table (a kernel parameter): loading it from global memory, 16 loads a
/// thread, cost ~3.5 us of a 20 us GEMV (H100, M = 1). Needs a barrier before use.
template <int Threads>
__device__ __forceinline__ void fill_table(uint32_t* table_smem, const code_table& table) {
  constexpr int words = 256 * 32, per_thread = (words + Threads - 1) / Threads, warps = Threads / 32;
  if constexpr (16 % warps == 0) {
    // 8 or 16 warps: word threadIdx.x + j Threads is entry warp + j warps, whose low code is warp
    // (+ 8 for odd j with 8 warps) and high code j warps / 16: two prmt a word.
    const unsigned warp = threadIdx.x >> 5;
    uint32_t low[4];  // low halves: the values of codes warp and warp + 8
    table_lookup(low, warp | (warp + 8) << 8, table.words);
#pragma unroll
    for (int j = 0; j < per_thread; ++j) {
      const int hi = j * warps / 16, q = hi / 4, b = hi % 4;
      const uint32_t value_hi = prmt(table.words[q], table.words[4 + q], b | (b + 4) << 4);
      table_smem[threadIdx.x + j * Threads] = prmt(low[(j * warps % 16) / 8], value_hi, 0x5410u);
    }
  } else {
#pragma unroll
    for (int e0 = 0; e0 < per_thread; e0 += 4) {  // 12 warps: four entries a table_lookup
      uint32_t codes = 0;  // bytes e: the entries of words threadIdx.x + (e0 + e) * Threads
#pragma unroll
      for (int e = 0; e < 4; ++e) codes |= (((threadIdx.x + (e0 + e) * Threads) >> 5) & 0xffu) << (8 * e);
      uint32_t pair[4];
      table_lookup(pair, codes, table.words);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const unsigned i = threadIdx.x + (e0 + e) * Threads;
        if (e0 + e < per_thread && (words % Threads == 0 || i < words)) table_smem[i] = pair[e];
      }
    }
  }
}

/// The A fragment of subtile j from a lane's codes (words: 4 for 4-bit, 8 for 8-bit).
/// bias_g / bias_g8: half2(1024 + zero) of rows g and g + 8 (integer kinds).
/// BF16: the fragment in bf16. 4-bit integers use bf16's magic number (code | 0x4300 is the bf16
/// 128 + code; bias_g / bias_g8 are then bf16x2(-(128 + zero)), added by one fma); tables hold
/// bf16 values; the rest are made in fp16, exactly, and converted.
/// lane_table: this lane's column of the block's byte -> pair table (dequant_kind::table), else unused.
template <int Bits, dequant_kind Kind, bool BF16>
__device__ __forceinline__ void dequant(uint32_t (&a)[4], const uint32_t* words, int j, uint32_t bias_g,
                                        uint32_t bias_g8, const uint32_t* lane_table) {
  if constexpr (BF16 && Bits == 4 && Kind == dequant_kind::integer) {
    const uint32_t w = words[j];
    uint32_t h[4];
#pragma unroll
    for (int p = 0; p < 4; ++p)  // pair p in nibbles p and p + 4
      asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(h[p]) : "r"(w >> (4 * p)), "r"(0x000f000fu), "r"(0x43004300u));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(a[0]) : "r"(h[0]), "r"(0x3f803f80u), "r"(bias_g));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(a[1]) : "r"(h[1]), "r"(0x3f803f80u), "r"(bias_g8));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(a[2]) : "r"(h[2]), "r"(0x3f803f80u), "r"(bias_g));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(a[3]) : "r"(h[3]), "r"(0x3f803f80u), "r"(bias_g8));
  } else if constexpr (BF16 && Kind != dequant_kind::table) {
    dequant<Bits, Kind, false>(a, words, j, bias_g, bias_g8, lane_table);
#pragma unroll
    for (int p = 0; p < 4; ++p) a[p] = half2_to_bf162(a[p]);
  } else if constexpr (Bits == 8 && Kind == dequant_kind::e4m3) {
    // Each byte to the high byte of its half, then the exponent and mantissa one bit down (sign
    // stays): E4M3's 4-bit exponent (bias 7) becomes fp16's (bias 15), so the fp16 is the value
    // times 2^-8, subnormals included (E4M3's 2^-6 m / 8 lands on fp16's 2^-14 m / 8). Plain bit
    // operations: the same code on sm_80 and sm_90 (cvt from e4m3 needs sm_89). The codes never
    // hold E4M3's NaN (the quantizer saturates to +-448).
    const uint32_t w0 = words[2 * j], w1 = words[2 * j + 1];
    const uint32_t h[4] = {__byte_perm(w0, 0, 0x1404), __byte_perm(w0, 0, 0x3424), __byte_perm(w1, 0, 0x1404),
                           __byte_perm(w1, 0, 0x3424)};
#pragma unroll
    for (int p = 0; p < 4; ++p) a[p] = (h[p] & 0x80008000u) | ((h[p] >> 1) & 0x3f803f80u);
  } else if constexpr (Bits == 8) {
    const uint32_t w0 = words[2 * j], w1 = words[2 * j + 1];
    a[0] = hsub2_bits(__byte_perm(w0, 0x64646464u, 0x4140), bias_g);
    a[1] = hsub2_bits(__byte_perm(w0, 0x64646464u, 0x4342), bias_g8);
    a[2] = hsub2_bits(__byte_perm(w1, 0x64646464u, 0x4140), bias_g);
    a[3] = hsub2_bits(__byte_perm(w1, 0x64646464u, 0x4342), bias_g8);
  } else if constexpr (Kind == dequant_kind::integer) {
    // Pairs 0 / 2 sit in nibbles 0, 4 (2, 6 after >> 8): | 0x6400 gives 1024 + code. Pairs 1 / 3 sit
    // in nibbles 1, 5: | 0x6400 gives 1024 + 16 code, and code - zero = v / 16 - (64 + zero), one fma.
    const uint32_t w = words[j], w8 = w >> 8;
    uint32_t h0, h1, h2, h3;
    asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(h0) : "r"(w), "r"(0x000f000fu), "r"(0x64006400u));
    asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(h1) : "r"(w), "r"(0x00f000f0u), "r"(0x64006400u));
    asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(h2) : "r"(w8), "r"(0x000f000fu), "r"(0x64006400u));
    asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(h3) : "r"(w8), "r"(0x00f000f0u), "r"(0x64006400u));
    a[0] = hsub2_bits(h0, bias_g);
    a[2] = hsub2_bits(h2, bias_g);
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(a[1]) : "r"(h1), "r"(0x2c002c00u), "r"(bias_g8));  // 1/16
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(a[3]) : "r"(h3), "r"(0x2c002c00u), "r"(bias_g8));
  } else if constexpr (Kind == dequant_kind::e2m1 || Kind == dequant_kind::mxfp4) {
    // Pair p in nibbles p, p + 4: magnitude bits to fp16 bits 9..11 (exponent low bits and the top
    // mantissa bit), sign to bit 15: the fp16 is the E2M1 value times 2^-14 (E2M1's subnormal 0.5
    // lands on fp16's subnormal 2^-15); the group flush multiplies the 2^14 back.
    const uint32_t w = words[j];
    a[0] = ((w << 9) & 0x0e000e00u) | ((w << 12) & 0x80008000u);
    a[1] = ((w << 5) & 0x0e000e00u) | ((w << 8) & 0x80008000u);
    a[2] = ((w << 1) & 0x0e000e00u) | ((w << 4) & 0x80008000u);
    a[3] = ((w >> 3) & 0x0e000e00u) | (w & 0x80008000u);
  } else {
    // One shared-memory load per register, at this lane's column + 128 bytes a byte value: prmt,
    // lea, ld.shared. (Indexed as lane_table[b << 5], nvcc made it 5 instructions, (b << 5 | lane)
    // * 4 + base. The lookup in registers, table_lookup per word, kept the ring whole but cost 21
    // ALU instructions a word: slower at every M on an H100.)
    const uint32_t w = words[j];
    const unsigned column = static_cast<unsigned>(__cvta_generic_to_shared(lane_table));
#pragma unroll
    for (int p = 0; p < 4; ++p)
      asm("ld.shared.u32 %0, [%1];" : "=r"(a[p]) : "r"(column + (__byte_perm(w, 0, 0x4440 + p) << 7)));
  }
}

/// A 16-byte read-only global load. volatile: the compiler must not sink a prefetch into the
/// branch that uses it (it did: the activations of every second chunk were loaded at use, their L2
/// latency exposed).
__device__ __forceinline__ ::uint4 ldg128(const void* global) {
  ::uint4 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(global));
  return v;
}

__device__ __forceinline__ void cp_async16(void* shared, const void* global) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(address), "l"(global));
}
/// 16 bytes of which the first src_bytes come from global, the rest are zeros.
__device__ __forceinline__ void cp_async16_fill(void* shared, const void* global, int src_bytes) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(address), "l"(global), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(Pending));
}

/// The dequantizer's bias words of rows g and g + 8 (integer kinds; see dequant) from their scale
/// words half2(scale, 1024 + zero): 4-bit fp16 rows g + 8 take -(64 + zero) (their codes sit 4 bits
/// up), 4-bit bf16 rows bf16x2(-(128 + zero)); otherwise the high halves as stored.
template <int Bits, dequant_kind Kind, bool BF16>
__device__ __forceinline__ void dequant_biases(uint32_t sc_g, uint32_t sc_g8, uint32_t& bias_g, uint32_t& bias_g8) {
  bias_g = __byte_perm(sc_g, 0, 0x3232), bias_g8 = __byte_perm(sc_g8, 0, 0x3232);
  if constexpr (BF16 && Bits == 4 && Kind == dequant_kind::integer) {  // -(128 + zero) = 896 - (1024 + zero)
    bias_g = bf16x2_bits(896.0f - __high2float(*reinterpret_cast<const __half2*>(&sc_g)));
    bias_g8 = bf16x2_bits(896.0f - __high2float(*reinterpret_cast<const __half2*>(&sc_g8)));
  } else if constexpr (Bits == 4 && Kind == dequant_kind::integer) {  // -(64 + zero) = 960 - (1024 + zero)
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(bias_g8) : "r"(bias_g8), "r"(0xbc00bc00u), "r"(0x63806380u));
  }
}

/// A warp's Tiles 16-row weight tiles of one chunk from its stage in shared memory: each lane's
/// code words (W / 4 16-byte reads a tile, 32 lanes apart), the scale words of rows g and g + 8 of
/// each tile (16 a tile), and their dequant biases.
template <int Bits, dequant_kind Kind, bool BF16, int Tiles, int W>
__device__ __forceinline__ void load_chunk_tiles(const ::uint4* codes, const uint32_t* scales, int lane, int g,
                                                 uint32_t (&words)[Tiles][W], uint32_t (&sc_g)[Tiles],
                                                 uint32_t (&sc_g8)[Tiles], uint32_t (&bias_g)[Tiles],
                                                 uint32_t (&bias_g8)[Tiles]) {
  constexpr int vecs = W / 4;
#pragma unroll
  for (int tl = 0; tl < Tiles; ++tl) {
#pragma unroll
    for (int v = 0; v < vecs; ++v) {
      const ::uint4 q = codes[(tl * vecs + v) * 32 + lane];
      words[tl][4 * v] = q.x, words[tl][4 * v + 1] = q.y, words[tl][4 * v + 2] = q.z, words[tl][4 * v + 3] = q.w;
    }
    sc_g[tl] = scales[tl * 16 + g], sc_g8[tl] = scales[tl * 16 + g + 8];
    dequant_biases<Bits, Kind, BF16>(sc_g[tl], sc_g8[tl], bias_g[tl], bias_g8[tl]);
  }
}

/// A scale group's factor from its scale word (not MXFP4): the fp16 scale times the power of two
/// that the dequantizer left out (E2M1 values come out times 2^-14, E4M3 times 2^-8).
template <dequant_kind Kind>
__device__ __forceinline__ float group_scale(uint32_t sc) {
  constexpr float unit = Kind == dequant_kind::e2m1 ? 16384.0f : Kind == dequant_kind::e4m3 ? 256.0f : 1.0f;
  return unit * __low2float(*reinterpret_cast<const __half2*>(&sc));
}
/// MXFP4: the factor of MX block b (0, 1) of a chunk from its scale word: E8M0 byte e gives
/// 2^(e - 127) x 2^14 = 2^(e - 113) (E2M1 values come out times 2^-14).
__device__ __forceinline__ float mx_block_scale(uint32_t sc, int b) {
  return __uint_as_float((((sc >> (8 * b)) & 0xffu) + 14u) << 23);
}

/// A scale group's end for tile column tl: its partial sums (fragments 0-1: rows g, 2-3: rows g + 8
/// of the mma tile) times the rows' scales into acc, and the partial sums cleared for the next group.
template <int MTiles, int Tiles>
__device__ __forceinline__ void flush_group(float (&acc)[MTiles][Tiles][4], float (&part)[MTiles][Tiles][4], int tl,
                                            float s_g, float s_g8) {
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt) {
    acc[mt][tl][0] += s_g * part[mt][tl][0];
    acc[mt][tl][1] += s_g * part[mt][tl][1];
    acc[mt][tl][2] += s_g8 * part[mt][tl][2];
    acc[mt][tl][3] += s_g8 * part[mt][tl][3];
    part[mt][tl][0] = part[mt][tl][1] = part[mt][tl][2] = part[mt][tl][3] = 0.0f;
  }
}

/// Split K: called by every thread of a block once it has stored its partial sums. True in the
/// last block of its split set to arrive (counters[blockIdx.x] counts them; the threadfence-reduction
/// pattern), which then adds every split's partials; it resets the counter for the next launch on
/// the same workspace.
__device__ __forceinline__ bool last_of_split_set(unsigned* __restrict__ counters, int splits) {
  __threadfence();
  __syncthreads();
  __shared__ int last_block;
  if (threadIdx.x == 0) last_block = atomicAdd(counters + blockIdx.x, 1u) == unsigned(splits - 1);
  __syncthreads();
  if (!last_block) return false;
  __threadfence();
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;
  return true;
}

/// The end of the wide (split-N, split-K) kernels, gemm_wide_kernel and sparse24_wide_kernel: acc
/// holds this warp's sums of mma tiles (mt, tl) (fragment i as mma.sync / mma.sp leave it) for its
/// tiles from tile0 over this block's split of K (blockIdx.y of gridDim.y). One split: stored. Else
/// written to partials ([bx][s][warp][value][lane]) and counted in counters[bx]; the split set's
/// last block adds the splits in order 0, 1, ... (deterministic) and stores fp16 / bf16 outputs
/// inside n x m; col0: the column of x tile 0 (warps that split M). Called by every thread of the
/// block (it has barriers).
template <int MTiles, int Tiles, int Warps, class T>
__device__ __forceinline__ void wide_store(const float (&acc)[MTiles][Tiles][4], float* __restrict__ partials,
                                           unsigned* __restrict__ counters, int warp, int lane, int tile0, int n, int m,
                                           T* __restrict__ y, int ldy, int col0 = 0) {
  const int g = lane >> 2, t = lane & 3, split = blockIdx.y, splits = gridDim.y;
  // Output (row, col) of fragment i of mma tile (mt, tl): as reduce_warps numbers them.
  const auto store = [&](int mt, int tl, int i, float sum) {
    const int row = (tile0 + tl) * 16 + g + 8 * (i >> 1), col = col0 + mt * 8 + 2 * t + (i & 1);
    if (row < n && col < m) {
      if constexpr (is_bf16<T>) y[(size_t)col * ldy + row] = __float2bfloat16(sum);
      else y[(size_t)col * ldy + row] = __float2half(sum);
    }
  };
  if (splits == 1) {
#pragma unroll
    for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
        for (int i = 0; i < 4; ++i) store(mt, tl, i, acc[mt][tl][i]);
    return;
  }
  // Split K: this block's sums to partials (coalesced: [value][lane]), then the last block of the
  // split set (the threadfence-reduction pattern) adds the splits in order 0, 1, ... and stores.
  constexpr int values = MTiles * Tiles * 4;
  const auto slot = [&](int s) { return partials + (((size_t)blockIdx.x * splits + s) * Warps + warp) * values * 32 + lane; };
  float* mine_out = slot(split);
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
      for (int i = 0; i < 4; ++i) mine_out[((mt * Tiles + tl) * 4 + i) * 32] = acc[mt][tl][i];
  if (!last_of_split_set(counters, splits)) return;
  // A split's values at once (independent loads, one L2 round trip a split; loading them value
  // by value, one dependent add after another, cost ~40 us at M = 64 with 4 splits).
  float sum[MTiles][Tiles][4] = {};
  for (int s = 0; s < splits; ++s) {
    const float* other = slot(s);
#pragma unroll
    for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          sum[mt][tl][i] += s == split ? acc[mt][tl][i] : __ldcg(other + ((mt * Tiles + tl) * 4 + i) * 32);
  }
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl)
#pragma unroll
      for (int i = 0; i < 4; ++i) store(mt, tl, i, sum[mt][tl][i]);
}

/// 16-byte cp.async to a 32-bit shared-memory address (__cvta_generic_to_shared).
__device__ __forceinline__ void cp_async16_at(unsigned shared, const void* global) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(shared), "l"(global));
}
__device__ __forceinline__ void cp_async16_fill_at(unsigned shared, const void* global, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(shared), "l"(global), "r"(src_bytes));
}

/// Multiprocessors of the current device.
inline int sm_count() {
  int device = 0, count = 0;
  LOWBIT_CUDA_CHECK(cudaGetDevice(&device));
  LOWBIT_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

}  // namespace detail

/// Device scratch of the M > 16 kernel's split-K partial sums (fp32) and its per-block counters;
/// grows on demand (reuse it across calls; one call at a time). Without one, cuda::gemm takes the
/// scratch from the stream-ordered allocator (cudaMallocAsync) for each call.
class gemm_workspace {
 public:
  /// Room for `floats` partial sums and `counters` counters (zero: set so when allocated, and the
  /// kernel leaves them zero).
  void reserve(std::size_t floats, std::size_t counters, cudaStream_t stream) {
    if (floats <= floats_ && counters <= counters_) return;
    floats_ = floats > floats_ ? floats : floats_;
    counters_ = ((counters > counters_ ? counters : counters_) + 63) / 64 * 64;  // keeps the floats 256-byte aligned
    buffer_.reset();
    void* p = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&p, counters_ * sizeof(unsigned) + floats_ * sizeof(float)));
    buffer_.reset(p);
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(p, 0, counters_ * sizeof(unsigned), stream));
  }
  unsigned* counters() const noexcept { return static_cast<unsigned*>(buffer_.get()); }
  float* partials() const noexcept { return reinterpret_cast<float*>(counters() + counters_); }

 private:
  detail::device_buffer buffer_;
  std::size_t floats_ = 0, counters_ = 0;
};

/// Launch options; the defaults are what the benchmark found best on an H100.
struct gemm_options {
  int tiles_per_block = 0;  ///< M <= 16: 1, 2 or 4 (rows per block / 16; 4 needs K % 64 == 0); 0: chosen from the shape
  int warps = 0;            ///< warps a block: 8 or 16, or 12 for M <= 16 and codebook formats (M <= 16: splitting K; M = 17..64: 2 or 1 tiles each; M > 64: 4 x 2 or 4 x 4 warps of a 128 x 128 block on mma.sync); 0: the default (M > 32 on sm_90a: the wgmma kernel, gemm_wgmma.cuh, except MXFP4)
  int split_k = 0;          ///< M > 16: blocks splitting K (at most one per 64-wide chunk); 0: about one block an SM (M > 64: only when the output blocks are fewer)
  gemm_workspace* workspace = nullptr;  ///< M > 16 with split_k > 1: scratch; null: allocated per call
  bool dependent_launch = false;  ///< M <= 16: launch as a programmatic dependent of the stream's previous kernel (sm_90; elsewhere a plain launch): the first weight stages are copied while it finishes, x read and y written only once its writes are visible (so the weights must not be its output)
};

namespace detail {

/// The wide kernels' split of K and its scratch (gemm_wide; gemm_sparse24 for M > 16):
/// options.split_k blocks along K (0: the blocks along N times the splits about blocks_per_sm an
/// SM), at most one a chunk and none empty. With more than one split, room for floats_per_block partial sums a
/// block and split and a counter a block column: options.workspace, or cudaMallocAsync (given back
/// in stream order when this goes out of scope, also on a throw) with the counters zeroed.
class wide_split {
 public:
  wide_split(const char* who, int chunks, int blocks_n, int blocks_per_sm, std::size_t floats_per_block,
             const gemm_options& options, cudaStream_t stream) {
    LOWBIT_CHECK(options.split_k >= 0, who << ": split_k=" << options.split_k << " must be >= 0");
    splits = options.split_k ? options.split_k : blocks_per_sm * sm_count() / blocks_n;
    splits = splits < 1 ? 1 : splits > chunks ? chunks : splits;
    split_chunks = (chunks + splits - 1) / splits;
    splits = (chunks + split_chunks - 1) / split_chunks;  // none empty
    if (splits == 1) return;
    const std::size_t floats = std::size_t(blocks_n) * splits * floats_per_block;
    if (options.workspace) {
      options.workspace->reserve(floats, blocks_n, stream);
      partials = options.workspace->partials();
      counters = options.workspace->counters();
      return;
    }
    const std::size_t counter_bytes = (std::size_t(blocks_n) * sizeof(unsigned) + 255) / 256 * 256;
    scratch_.stream = stream;
    LOWBIT_CUDA_CHECK(cudaMallocAsync(&scratch_.p, counter_bytes + floats * sizeof(float), stream));
    counters = static_cast<unsigned*>(scratch_.p);
    partials = reinterpret_cast<float*>(static_cast<char*>(scratch_.p) + counter_bytes);
    LOWBIT_CUDA_CHECK(cudaMemsetAsync(counters, 0, std::size_t(blocks_n) * sizeof(unsigned), stream));
  }
  int splits = 1, split_chunks = 1;
  float* partials = nullptr;
  unsigned* counters = nullptr;

 private:
  struct stream_scratch {  // a member, so that it is given back when the constructor throws too
    void* p = nullptr;
    cudaStream_t stream = nullptr;
    stream_scratch() = default;
    stream_scratch(const stream_scratch&) = delete;
    stream_scratch& operator=(const stream_scratch&) = delete;
    ~stream_scratch() { if (p) cudaFreeAsync(p, stream); }
  } scratch_;
};

}  // namespace detail
}  // namespace cuda
}  // namespace lowbit
