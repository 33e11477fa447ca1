/// \file
/// \brief cuda::decode: decode attention (one query token per sequence) over a low-bit KV cache on
/// tensor cores; multi-head, grouped-query or multi-query; split-K flash-decoding.
///
///   const auto gpu_cache = lowbit::cuda::upload(cpu_cache);   // once (kv_cache.cuh)
///   lowbit::cuda::decode_workspace ws;
///   lowbit::cuda::decode(q, gpu_cache.view(), out, q_heads, ws, stream);  // q, out: fp16 or bf16 [B][Hq][d]
///
/// The regime is memory-bound (each cache byte is used by the G = q_heads / kv_heads query heads
/// of its group and never again), so the kernel's job is to stream the codes once and keep the
/// arithmetic and its latency under the memory time. Design (measurements: docs/cuda-decode-notes.md):
///  - Grid: (split, KV head, sequence). A block of 4 warps takes split_tokens tokens of one (sequence,
///    KV head); each warp takes every 4th stage of 4 (4-bit) or 2 (8-bit) consecutive tiles of 16
///    tokens (a tile's 16 rows are consecutive in storage: pages are multiples of 16 tokens,
///    contiguous caches are padded to 16 on upload) and computes two tiles an iteration, a 4-tile
///    stage at once (independent chains that hide each other's latency, one softmax reduction for
///    all; G > 8: stages of one tile, one at a time), with 2 (8-bit) or 4 (4-bit) more tiles in flight in its own shared-memory
///    ring. On sm_90 a stage arrives as 4 to 6 bulk copies (keys, values, their scales and zero
///    points; one set a tile where pages of 16 tokens split it) by the copy engine, completing on the
///    stage's mbarrier: the copy engine's cost goes with the number of copies more than with their
///    bytes (a set a tile instead of a set a pair took int4 9% longer); per-lane cp.async (sm_80's
///    path) kept the SM's own request queue full at ~1.7 TB/s.
///  - Transposed products, so that the tile, not the few query heads, fills the mma's 16 rows:
///    scoresᵀ[16 x heads] = K · qᵀ with mma.m16n8k16, the tile's 16 keys as A and the group's query
///    heads as B columns (8 a column tile; G <= 8 takes one mma a k-step, half of Q · Kᵀ's with 4 of
///    16 rows used). A lane reads its quarter of key rows g and g + 8 as one or two 16-byte
///    shared-memory loads and dequantizes in registers (integers by the magic number 0x6400 | code =
///    fp16 1024 + code, FP8 E4M3 by cvt on sm_89+), times the group scale in fp16; the head dimension
///    is consumed in a permuted order that matches those loads, and q is loaded once in the same
///    permutation (a dot product does not care about the order of its terms).
///    Signed 4-bit codes with one scale a row (int4 per token-head) skip the dequantization: the
///    codes enter mma.m16n8k32 .s8 as 16 x code (a shift and a mask a word), against q quantized per
///    head in the kernel to 16-bit fixed point split into int8 high and low parts (two int32 chains,
///    exact), and the row's scale multiplies the fp32 score.
///  - Online softmax in fp32 per head on the score fragments (base-2 exponentials, log2(e) folded
///    into q; the tile maximum over the lanes g by 3 shuffles); the reference maximum moves only
///    when a tile's exceeds it by 8 (in log2 units), so the accumulator is seldom rescaled.
///  - Oᵀ[d x heads] += Vᵀ · Pᵀ with mma: V's A fragment pairs tokens 2t, 2t + 1 at one head-dimension
///    index (rows), built from two rows' bytes by byte permutes; Pᵀ's B fragment is the fp16 score
///    fragment transposed 8 x 8 by movmatrix. Output rows are a permutation of d.
///  - The 4 warps merge in shared memory; with several splits, (max, sum, unnormalized O) go to the
///    workspace and a second kernel merges the splits by log-sum-exp and writes fp16 (on sm_90 a
///    programmatic dependent launch, so that its launch overlaps the decode's tail: 1.5 µs).
/// Numerics: q (times scale · log2 e), dequantized K and V, and P rounded to fp16; products
/// accumulated in fp32 on tensor cores; softmax state in fp32; output rounded to fp16. Dequantized
/// values must fit fp16 (|value| < 65504). Tolerance against the CPU decode (tests/cuda/test_cuda_decode.cu):
/// (2^-8 + 4 ds) sum_i p_i |v_i| + 2^-10 |out|, ds = 2^-10 scale max_i sum_e |q_e k_ie| bounding the
/// score error from fp16 q and K. Integer keys: K exact, q off by at most step / 2 = max_e |q_e| / 65278
/// an element, so a score by at most 2^-16 max|q| sum_e |k_ie| (plus 3 fp32 roundings), within the
/// 2 ds that the bound's 4 ds leaves the scores whenever max_e |q_e| sum_e |k_ie| <= 2^7 max_i sum_e
/// |q_e k_ie| (q's largest element at most 128 times its k-weighted mean magnitude: about 4 for
/// normal q). In the test the integer-key cases' worst error is 0.095 of the tolerance (0.016 with
/// fp16 output), the fp16-key cases' 0.152.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "activation_types.cuh"
#include "gemm.cuh"
#include "kv_cache.cuh"

namespace lowbit {
namespace cuda {

/// Decode launch options.
struct decode_options {
  float scale = 0.0f;    ///< multiplies q·k; 0: 1 / sqrt(head_dim)
  int split_tokens = 0;  ///< tokens per block (a multiple of 64); 0: about 2 blocks an SM, >= 256 tokens each
};

/// Device scratch for the split partials; grows on demand (reuse it across calls).
class decode_workspace {
 public:
  float* reserve(std::size_t floats) {
    if (floats > floats_) {
      buffer_.reset();
      void* p = nullptr;
      LOWBIT_CUDA_CHECK(cudaMalloc(&p, floats * sizeof(float)));
      buffer_.reset(p);
      floats_ = floats;
    }
    return static_cast<float*>(buffer_.get());
  }

 private:
  detail::device_buffer buffer_;
  std::size_t floats_ = 0;
};

namespace detail {

inline constexpr int decode_warps = 4;

/// Tiles a warp computes an iteration: two for G <= 8, one above (two spilled there).
__host__ __device__ constexpr int decode_pair(int max_g) { return max_g <= 8 ? 2 : 1; }
/// Consecutive tiles a warp's stage holds and copies together: 4 for 4-bit codes with pairs (two
/// iterations a stage) up to head_dim 128, else the pair (larger stages would leave one block an SM).
__host__ __device__ constexpr int decode_copy_tiles(int bits, int max_g, int d) {
  return bits == 4 && max_g <= 8 && d <= 128 ? 4 : decode_pair(max_g);
}

/// The kernel's copy of a kv_view (trivially copyable).
struct kv_params {
  kv_rows_view keys, values;
  const int* lengths;
  const uint32_t* tables;
  int kv_heads, capacity, page_tokens, table_width, groups, group_size;
};

/// Scale i of a tile's scales in shared memory (float, fp16 or bf16) as float.
template <class Scale>
__device__ __forceinline__ float load_scale(const uint8_t* scales, int i) {
  if constexpr (std::is_same<Scale, float>::value) {
    return reinterpret_cast<const float*>(scales)[i];
  } else {
    const unsigned short bits = reinterpret_cast<const unsigned short*>(scales)[i];
    if constexpr (std::is_same<Scale, fp16>::value) return __half2float(__ushort_as_half(bits));
    else return __uint_as_float(static_cast<uint32_t>(bits) << 16);  // bf16
  }
}

__device__ __forceinline__ uint32_t h2_bits(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 bits_h2(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }
__device__ __forceinline__ uint32_t hmul2_bits(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
__device__ __forceinline__ uint32_t hfma2_bits(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
/// The transpose of an 8 x 8 fp16 matrix held one half2 a lane in the mma fragment layout (lane
/// 4r + c holds row r, columns 2c and 2c + 1).
__device__ __forceinline__ uint32_t transpose_8x8(uint32_t x) {
  uint32_t d;
  asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(d) : "r"(x));
  return d;
}
/// c += a · b on the integer tensor cores (mma.m16n8k32 .s8: a0 / a2 row g, k 4t .. + 3 / 16 + 4t .. + 3,
/// a1 / a3 row g + 8; b0 / b1 the same k of column g).
__device__ __forceinline__ void mma_s8_16832(int (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t lop3_or_mask(uint32_t a, uint32_t mask, uint32_t bits) {  // (a & mask) | bits
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(d) : "r"(a), "r"(mask), "r"(bits));
  return d;
}

/// Two FP8 E4M3 codes (low 16 bits of w) to half2, exactly. sm_89+ converts in hardware; older
/// chips move the bits (E4M3's exponent and mantissa land in fp16's, giving the value times 2^-8
/// for normals and subnormals alike) and multiply the 2^8 back. Code 0x7f (NaN) is not produced
/// by lowbit's quantizers; the bit path reads it as 480.
__device__ __forceinline__ uint32_t e4m3x2_to_half2(uint32_t w) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  uint32_t d;
  const unsigned short pair = static_cast<unsigned short>(w & 0xffffu);
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(d) : "h"(pair));
  return d;
#else
  const uint32_t hi = __byte_perm(w, 0, 0x1404);  // byte 0 -> bits 8..15, byte 1 -> bits 24..31
  const uint32_t bits = (hi & 0x80008000u) | ((hi >> 1) & 0x3f803f80u);
  return hmul2_bits(bits, 0x5c005c00u);  // x 256
#endif
}

/// Dequantizes codes to half2 pairs for the mma; `flip` turns signed codes unsigned.
template <class Scheme>
struct kv_codec {
  using ks = kv_scheme<Scheme>;
  static constexpr int bits = Scheme::bits;
  static constexpr uint32_t flip = ks::implicit_zero == 0 ? 0u : (bits == 8 ? 0x80808080u : 0x88888888u);

  /// Per (row, group): half2 scale and the half2 bias 1024 + zero (integers) of one or two rows.
  struct row_params {
    uint32_t scale, bias, bias16;  // bias16: -(64 + zero), for nibbles read as 16 x code
  };
  __device__ static row_params params(float s0, float s1, unsigned z0, unsigned z1) {
    row_params p;
    p.scale = h2_bits(__floats2half2_rn(s0, s1));
    p.bias = (0x6400u | z0) | ((0x6400u | z1) << 16);
    p.bias16 = hfma2_bits(p.bias, 0xbc00bc00u, 0x63806380u);  // 960 - (1024 + zero)
    return p;
  }

  /// Key B fragment of k-step j from one row's words (the lane's quarter of the row).
  template <int Words>
  __device__ static void key_fragment(const uint32_t (&w)[Words], int j, const row_params& p, uint32_t& b0,
                                      uint32_t& b1) {
    if constexpr (ks::is_e4m3) {
      b0 = hmul2_bits(e4m3x2_to_half2(w[j]), p.scale);
      b1 = hmul2_bits(e4m3x2_to_half2(w[j] >> 16), p.scale);
    } else if constexpr (bits == 8) {
      const uint32_t x = w[j] ^ flip;
      b0 = hmul2_bits(hsub2_bits(__byte_perm(x, 0x64646464u, 0x4140), p.bias), p.scale);
      b1 = hmul2_bits(hsub2_bits(__byte_perm(x, 0x64646464u, 0x4342), p.bias), p.scale);
    } else {
      // Word j / 2 holds 8 codes; k-step j takes nibbles (2h, 2h + 4) and (2h + 1, 2h + 5), h = j % 2.
      const uint32_t x = (w[j >> 1] ^ flip) >> (8 * (j & 1));
      b0 = hmul2_bits(hsub2_bits(lop3_or_mask(x, 0x000f000fu, 0x64006400u), p.bias), p.scale);
      b1 = hmul2_bits(hfma2_bits(lop3_or_mask(x, 0x00f000f0u, 0x64006400u), 0x2c002c00u, p.bias16), p.scale);
    }
  }

  /// Value B fragments from two rows' words a, b (tokens 2t, 2t + 1): out[i] = half2(a_i, b_i) for
  /// the 4 (8-bit) or 8 (4-bit) head-dimension indices of word pair (a, b).
  __device__ static void value_pairs(uint32_t a, uint32_t b, const row_params& p, uint32_t* out) {
    if constexpr (ks::is_e4m3) {
      const uint32_t x = __byte_perm(a, b, 0x5140), y = __byte_perm(a, b, 0x7362);  // a0 b0 a1 b1, a2 b2 a3 b3
      out[0] = hmul2_bits(e4m3x2_to_half2(x), p.scale);
      out[1] = hmul2_bits(e4m3x2_to_half2(x >> 16), p.scale);
      out[2] = hmul2_bits(e4m3x2_to_half2(y), p.scale);
      out[3] = hmul2_bits(e4m3x2_to_half2(y >> 16), p.scale);
    } else if constexpr (bits == 8) {
      const uint32_t x = __byte_perm(a, b, 0x5140) ^ flip, y = __byte_perm(a, b, 0x7362) ^ flip;
      out[0] = hmul2_bits(hsub2_bits(__byte_perm(x, 0x64646464u, 0x4140), p.bias), p.scale);
      out[1] = hmul2_bits(hsub2_bits(__byte_perm(x, 0x64646464u, 0x4342), p.bias), p.scale);
      out[2] = hmul2_bits(hsub2_bits(__byte_perm(y, 0x64646464u, 0x4140), p.bias), p.scale);
      out[3] = hmul2_bits(hsub2_bits(__byte_perm(y, 0x64646464u, 0x4342), p.bias), p.scale);
    } else {
      // x = a0 a1 b0 b1: its low half holds a's nibbles 0..3, its high half b's.
      const uint32_t x = __byte_perm(a, b, 0x5410) ^ flip, y = __byte_perm(a, b, 0x7632) ^ flip;
      const uint32_t xs[4] = {x, x >> 8, y, y >> 8};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        out[2 * i] = hmul2_bits(hsub2_bits(lop3_or_mask(xs[i], 0x000f000fu, 0x64006400u), p.bias), p.scale);
        out[2 * i + 1] =
            hmul2_bits(hfma2_bits(lop3_or_mask(xs[i], 0x00f000f0u, 0x64006400u), 0x2c002c00u, p.bias16), p.scale);
      }
    }
  }
};

/// Head dimensions whose rows a lane reads in 4-code steps (80, 96: a lane's quarter of a key row
/// is not a whole number of 16-byte pieces, nor its eighth of a value row of words) rather than in
/// pieces (64, 128, 256).
__host__ __device__ constexpr bool decode_step_layout(int d) { return d != 64 && d != 128 && d != 256; }

/// Head-dimension index of the lane's k-step j element (register half r, element e): the order in
/// which key_fragment consumes the lane's quarter of a key row. Piece layout: 16-byte pieces (8
/// bytes for 4-bit at head_dim 64), piece p of lane t the row's piece 4 p + t (so that the 4 lanes
/// of a row read 64 contiguous bytes in each copy); within a piece, 8-bit codes in order, 4-bit
/// codes as the nibble decode gives them (8 a word: 2 (j & 1) + r + 4 e). Step layout: k-step j of
/// lane t is the row's codes 16 j + 4 t .. + 3 (a word of 8-bit codes, or half of one of 4-bit codes
/// whose other half is step j ^ 1's: see the kernel).
template <int Bits, int D>
__host__ __device__ constexpr int key_dim(int t, int j, int r, int e) {
  if (decode_step_layout(D)) return 16 * j + 4 * t + (Bits == 8 ? 2 * r + e : r + 2 * e);
  constexpr int piece_codes = Bits == 8 ? 16 : (D / 4 < 32 ? D / 4 : 32), steps = piece_codes / 4;
  const int piece = j / steps, js = j % steps, base = (4 * piece + t) * piece_codes;
  return Bits == 8 ? base + 4 * js + 2 * r + e : base + 8 * (js >> 1) + 2 * (js & 1) + r + 4 * e;
}

/// Shared memory of one warp's stage (Tiles consecutive tiles): their 16 Tiles key rows and value
/// rows as stored (one bulk copy each; the lanes' reads then conflict 2-way on keys and 4-way on
/// 8-bit values, which measured cheaper than one copy a padded row), then the rows of key and value
/// scales and zero points (at most 4 groups a row: group_size >= head_dim / 4), then the stage's
/// mbarrier (bulk copies on sm_90).
template <class Scheme, int D, int Tiles>
struct decode_stage {
  static constexpr int bits = Scheme::bits, rows = 16 * Tiles;
  static constexpr int row_bytes = D * bits / 8;
  static constexpr int key_stride = row_bytes, value_stride = row_bytes;  // a tile is one contiguous copy
  static constexpr int key_bytes = D / 4 * bits / 8, value_bytes = D / 8 * bits / 8;  // a lane's share of a row
  static constexpr int key_piece = key_bytes < 16 ? key_bytes : 16;
  static constexpr int key_pieces = key_bytes / key_piece;
  static constexpr int scale_bytes = rows * 4 * static_cast<int>(sizeof(typename Scheme::scale_type));
  static constexpr int zero_bytes = Scheme::has_zero ? rows * 4 : 0;
  static constexpr int keys = 0, values = keys + rows * key_stride;
  static constexpr int key_scales = values + rows * value_stride, value_scales = key_scales + scale_bytes;
  static constexpr int key_zeros = value_scales + scale_bytes, value_zeros = key_zeros + zero_bytes;
  static constexpr int barrier = value_zeros + zero_bytes;
  static constexpr int bytes = (barrier + 8 + 15) / 16 * 16;
  /// Tiles a warp has in flight: (stages - 1) x Tiles ahead of the Tiles computed.
  static constexpr int stages = Tiles == 4 ? 2 : Tiles == 2 ? (bits == 8 ? 2 : 3) : (bits == 8 ? 3 : 5);
  static constexpr int ring_bytes = decode_warps * stages * bytes;
  static constexpr int merge_bytes = decode_warps * 16 * D * 4;
  static constexpr int smem_bytes = ring_bytes > merge_bytes ? ring_bytes : merge_bytes;
};

__device__ __forceinline__ unsigned smem_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

template <int Bytes>
__device__ __forceinline__ void cp_async(void* shared, const void* global) {
  static_assert(Bytes == 16 || Bytes == 8, "16- or 8-byte copies");
  if constexpr (Bytes == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_address(shared)), "l"(global));
  else asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(smem_address(shared)), "l"(global));
}

/// The Bytes bytes at p + i * Bytes from shared memory into words (zero-padded), by the widest loads
/// that alignment allows (the step layout's value rows: 5, 6, 10 or 12 bytes a lane; p 16-byte aligned).
template <int Bytes>
__device__ __forceinline__ void load_bytes(uint32_t* w, const uint8_t* p, int i) {
  p += i * Bytes;
#pragma unroll
  for (int k = 0; k < (Bytes + 3) / 4; ++k) w[k] = 0u;
  if constexpr (Bytes % 4 == 0) {
#pragma unroll
    for (int k = 0; k < Bytes / 4; ++k) w[k] = reinterpret_cast<const uint32_t*>(p)[k];
  } else if constexpr (Bytes % 2 == 0) {
#pragma unroll
    for (int k = 0; k < Bytes / 2; ++k)
      w[k / 2] |= static_cast<uint32_t>(reinterpret_cast<const unsigned short*>(p)[k]) << (16 * (k % 2));
  } else {
#pragma unroll
    for (int k = 0; k < Bytes; ++k) w[k / 4] |= static_cast<uint32_t>(p[k]) << (8 * (k % 4));
  }
}

/// Words consecutive 32-bit words from shared memory (16-, 8- or 4-byte loads).
template <int Words>
__device__ __forceinline__ void load_words(uint32_t* w, const uint8_t* p) {
  if constexpr (Words % 4 == 0) {
#pragma unroll
    for (int i = 0; i < Words / 4; ++i) {
      const ::uint4 v = reinterpret_cast<const ::uint4*>(p)[i];
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  } else if constexpr (Words == 2) {
    const ::uint2 v = *reinterpret_cast<const ::uint2*>(p);
    w[0] = v.x, w[1] = v.y;
  } else {
    static_assert(Words == 1, "1, 2 or a multiple of 4 words");
    w[0] = *reinterpret_cast<const uint32_t*>(p);
  }
}


/// One block: split blockIdx.x of KV head blockIdx.y of sequence blockIdx.z, G <= MaxG query heads.
/// With splits == 1 it writes the normalized fp16 output; else (max, sum) and unnormalized O
/// partials to work ([B][Hkv][G][splits] x (D + 2) floats: O, then max and sum).
/// Up to head_dim 128, 3 blocks an SM (as many as the rings allow; 4-tile stages, computed whole,
/// are bounded at 2 for the compiler and take 118-155 registers, so 3 still fit); 256: one or two
/// (rings of 105-133 KiB), so 255 registers a thread (168 spilled).
/// IntKeys: keys on the integer tensor cores (signed 4-bit codes, one scale a row; see decode_launch).
template <class Scheme, int D, int MaxG, class T, bool IntKeys = false>
__global__ void __launch_bounds__(decode_warps * 32, D <= 128 ? (decode_copy_tiles(Scheme::bits, MaxG, D) == 4 ? 2 : 3) : 1)
    decode_kernel(const T* __restrict__ q, kv_params kv, int group, float q_scale, int split_tokens, int splits,
                  float* __restrict__ work, T* __restrict__ out) {
  using codec = kv_codec<Scheme>;
  using scale_type = typename Scheme::scale_type;
  constexpr bool steps = decode_step_layout(D);
  constexpr int bits = Scheme::bits, KS = D / 16, MT = D / 16;
  constexpr int lane_value_bytes = D / 8 * bits / 8, VW = (lane_value_bytes + 3) / 4;  // a lane's share of a value row
  constexpr int KW = steps ? (bits == 8 ? KS : (KS + 1) / 2) : D / 4 * bits / 32;    // and of a key row, in words
  constexpr int NH = MaxG / 8;  // 8-head column tiles of the transposed products
  // Tiles computed an iteration: a 4-tile stage whole (one softmax reduction for 4 tiles, 4
  // independent chains: 2.5% on int4 at the benchmark's shape), else the pair.
  constexpr int ctiles = decode_copy_tiles(Scheme::bits, MaxG, D), pair = ctiles == 4 ? 4 : decode_pair(MaxG);
  using stage_layout = decode_stage<Scheme, D, ctiles>;
  constexpr int row_bytes = D * bits / 8, stages = stage_layout::stages;
  constexpr int per_word = 32 / bits;  // head-dimension indices a V word covers
  constexpr int scale_size = static_cast<int>(sizeof(scale_type));
  constexpr float neg_inf = -INFINITY;
  __shared__ float m_s[decode_warps][16], l_s[decode_warps][16], row_max[16], row_sum[16];
  extern __shared__ ::uint4 smem_vecs[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(smem_vecs);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int split = blockIdx.x, head = blockIdx.y, seq = blockIdx.z;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // The merge kernel may be launched now (it waits for this grid's completion before it reads).
  if (splits > 1) asm volatile("griddepcontrol.launch_dependents;");
#endif
  const int length = kv.lengths[seq];
  const int t_begin = split * split_tokens, t_end = min(length, t_begin + split_tokens);
  const int q_heads = kv.kv_heads * group;
  uint8_t* ring = smem + warp * stages * stage_layout::bytes;

  // The group's queries as B fragments (column g of head tile hn: query head 8 hn + g; zero past
  // the group).
  uint32_t qb[IntKeys ? 1 : KS][NH][2];
  // Integer keys (IntKeys): q as 16-bit fixed point per head, split into int8 high and low parts,
  // as the B fragments of mma.m16n8k32 .s8 against key word i (qi[i][hn][b][part]: b0 takes the
  // word's even nibbles, b1 its odd ones); uq: the lane's heads' (8 hn + 2t + e) step / 16.
  uint32_t qi[IntKeys ? KW : 1][NH][2][2];
  float uq[NH][2];
  if constexpr (IntKeys) {
    const T* q0 = q + ((size_t)seq * q_heads + (size_t)head * group) * D;
    float qv[KW][NH][8], mx[NH];
#pragma unroll
    for (int hn = 0; hn < NH; ++hn) {
      mx[hn] = 0.0f;
      const int row = 8 * hn + g;
#pragma unroll
      for (int i = 0; i < KW; ++i)
#pragma unroll
        for (int n = 0; n < 8; ++n) {
          // Nibble n of key word i is k-step 2i + (n >> 1 & 1)'s register half n & 1, element n >> 2.
          const int j = 2 * i + ((n >> 1) & 1);
          float x = 0.0f;
          if (row < group && j < KS) x = q_scale * to_float(q0[row * D + key_dim<bits, D>(t, j, n & 1, n >> 2)]);
          qv[i][hn][n] = x;
          mx[hn] = fmaxf(mx[hn], fabsf(x));
        }
      mx[hn] = fmaxf(mx[hn], __shfl_xor_sync(0xffffffffu, mx[hn], 1));
      mx[hn] = fmaxf(mx[hn], __shfl_xor_sync(0xffffffffu, mx[hn], 2));  // the head's max over its 4 lanes
      // |q / step| <= 32639, so that hi = (q_int + 128) >> 8 stays in [-127, 127] and lo in [-128, 127].
      const float inv = mx[hn] > 0.0f ? 32639.0f / mx[hn] : 0.0f;
#pragma unroll
      for (int i = 0; i < KW; ++i)
#pragma unroll
        for (int b = 0; b < 2; ++b) {
          uint32_t hi = 0u, lo = 0u;
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int qint = __float2int_rn(qv[i][hn][2 * e + b] * inv);
            const int h = (qint + 128) >> 8, l = qint - 256 * h;
            hi |= (static_cast<uint32_t>(h) & 0xffu) << (8 * e);
            lo |= (static_cast<uint32_t>(l) & 0xffu) << (8 * e);
          }
          qi[i][hn][b][0] = hi, qi[i][hn][b][1] = lo;
        }
      const float step16 = mx[hn] / (32639.0f * 16.0f);  // keys enter as 16 x code
#pragma unroll
      for (int e = 0; e < 2; ++e) uq[hn][e] = __shfl_sync(0xffffffffu, step16, 4 * (2 * t + e));
    }
  } else {
    const T* q0 = q + ((size_t)seq * q_heads + (size_t)head * group) * D;
#pragma unroll
    for (int j = 0; j < KS; ++j)
#pragma unroll
      for (int hn = 0; hn < NH; ++hn)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int row = 8 * hn + g;
          float lo = 0.0f, hi = 0.0f;
          if (row < group) {
            lo = q_scale * to_float(q0[row * D + key_dim<bits, D>(t, j, r, 0)]);
            hi = q_scale * to_float(q0[row * D + key_dim<bits, D>(t, j, r, 1)]);
          }
          qb[j][hn][r] = h2_bits(__floats2half2_rn(lo, hi));
        }
  }

  // Tiles of this warp: ctiles consecutive tiles from first, first + 4 ctiles, ... below end (a tile
  // never crosses a split or a page; a stage starts at a tile a multiple of ctiles from the split's
  // start, itself a multiple of 4 tiles).
  const int first = t_begin / 16 + ctiles * warp, end = (t_end + 15) / 16;
  constexpr int kp = stage_layout::key_piece, key_pieces = stage_layout::key_pieces;
  constexpr int key_stride = stage_layout::key_stride, value_stride = stage_layout::value_stride;
  int k_group[key_pieces];  // group of each of the lane's key pieces (a piece lies in one group)
#pragma unroll
  for (int p = 0; p < key_pieces; ++p) k_group[p] = ((4 * p + t) * kp * 8 / bits) / kv.group_size;
  const int v_group = ((D / 8) * g) / kv.group_size;
  int step_group[KS];  // step layout: the group of the lane's codes of each k-step
#pragma unroll
  for (int j = 0; j < KS; ++j) step_group[j] = (16 * j + 4 * t) / kv.group_size;
  const int scale_bytes = 16 * kv.groups * scale_size;  // a tile's scales: 16 consecutive rows
  const int zero_bytes = Scheme::has_zero ? 16 * kv.groups : 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool bulk = true;  // the copy engine: bytes in flight without the SM's per-thread request limits
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < stages; ++i)
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_address(ring + i * stage_layout::bytes + stage_layout::barrier)));
    asm volatile("fence.mbarrier_init.release.cluster;");
  }
  __syncwarp();
#else
  constexpr bool bulk = false;
#endif
  // Copies stage number i of this warp: 16 key rows and 16 value rows a tile, the tiles' scales and
  // zero points. sm_90: bulk copies (the copy engine) completing on the stage's mbarrier, one set
  // for the stage's tiles where their rows are consecutive in storage (contiguous caches, pages of
  // a multiple of 16 ctiles tokens), else one a tile; older chips: cp.async, 16 bytes a lane at
  // a time (rows past the length repeat the last token's), one commit group a stage (empty past the end).
  const auto row_of = [&](int tok0) -> std::size_t {
    if (kv.page_tokens) {
      const uint32_t page = __ldg(kv.tables + (size_t)seq * kv.table_width + tok0 / kv.page_tokens);
      return ((size_t)page * kv.kv_heads + head) * kv.page_tokens + tok0 % kv.page_tokens;
    }
    return ((size_t)seq * kv.kv_heads + head) * kv.capacity + tok0;
  };
  const bool together = kv.page_tokens == 0 || kv.page_tokens % (16 * ctiles) == 0;
  const auto issue = [&](int i) {
    const int tile0 = first + i * ctiles * decode_warps;
    if (tile0 < end) {
      const int n = min(ctiles, end - tile0);  // tiles of the pair before the end
      uint8_t* stage = ring + (i % stages) * stage_layout::bytes;
      if constexpr (bulk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        const unsigned bar = smem_address(stage + stage_layout::barrier);
        if (lane == 0)
          asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar),
                       "r"(n * (32 * row_bytes + 2 * scale_bytes + 2 * zero_bytes))
                       : "memory");
        const auto copy = [&](uint8_t* dst, const void* src, int bytes) {
          asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                           smem_address(dst)),
                       "l"(src), "r"(bytes), "r"(bar)
                       : "memory");
        };
        // Set u (lanes 8u .. 8u + 5) copies tile u, or all n tiles together: keys and values one
        // copy each (rows past the length come along; their values are zeroed on use and their keys
        // masked), scales and zero points one each.
        const int u = lane >> 3, copier = lane & 7;
        if (u < (together ? 1 : n) && copier < (Scheme::has_zero ? 6 : 4)) {
          const int tiles = together ? n : 1;
          const std::size_t row0 = row_of((tile0 + u) * 16);
          const uint8_t* key_scales = static_cast<const uint8_t*>(kv.keys.scales) + row0 * kv.groups * scale_size;
          const uint8_t* value_scales = static_cast<const uint8_t*>(kv.values.scales) + row0 * kv.groups * scale_size;
          if (copier == 0) copy(stage + stage_layout::keys + u * 16 * row_bytes, kv.keys.codes + row0 * row_bytes, tiles * 16 * row_bytes);
          if (copier == 1) copy(stage + stage_layout::values + u * 16 * row_bytes, kv.values.codes + row0 * row_bytes, tiles * 16 * row_bytes);
          if (copier == 2) copy(stage + stage_layout::key_scales + u * scale_bytes, key_scales, tiles * scale_bytes);
          if (copier == 3) copy(stage + stage_layout::value_scales + u * scale_bytes, value_scales, tiles * scale_bytes);
          if constexpr (Scheme::has_zero) {
            if (copier == 4) copy(stage + stage_layout::key_zeros + u * zero_bytes, kv.keys.zeros + row0 * kv.groups, tiles * zero_bytes);
            if (copier == 5) copy(stage + stage_layout::value_zeros + u * zero_bytes, kv.values.zeros + row0 * kv.groups, tiles * zero_bytes);
          }
        }
#endif
      } else {
        (void)together;
        constexpr int unit = row_bytes % 16 == 0 ? 16 : 8, row_pieces = row_bytes / unit;  // 8: 4-bit head_dim 80
        for (int u = 0; u < n; ++u) {
          const int tok0 = (tile0 + u) * 16, last = length - 1 - tok0;
          const std::size_t row0 = row_of(tok0);
          for (int piece = lane; piece < 16 * row_pieces; piece += 32) {
            const int r = piece / row_pieces, at = (piece % row_pieces) * unit;
            const std::size_t row = row0 + min(r, last);
            cp_async<unit>(stage + stage_layout::keys + (16 * u + r) * key_stride + at, kv.keys.codes + row * row_bytes + at);
            cp_async<unit>(stage + stage_layout::values + (16 * u + r) * value_stride + at, kv.values.codes + row * row_bytes + at);
          }
          // Scales: 16 bytes a lane, keys' by lanes 0..15, values' by 16..31.
          const int piece = lane & 15;
          const uint8_t* lane_scales =
              static_cast<const uint8_t*>(lane < 16 ? kv.keys.scales : kv.values.scales) + row0 * kv.groups * scale_size;
          if (piece * 16 < scale_bytes)
            cp_async<16>(stage + (lane < 16 ? stage_layout::key_scales : stage_layout::value_scales) + u * scale_bytes + piece * 16,
                         lane_scales + piece * 16);
          if constexpr (Scheme::has_zero) {
            if (piece * 16 < zero_bytes)
              cp_async<16>(stage + (lane < 16 ? stage_layout::key_zeros : stage_layout::value_zeros) + u * zero_bytes + piece * 16,
                           (lane < 16 ? kv.keys.zeros : kv.values.zeros) + row0 * kv.groups + piece * 16);
          }
        }
      }
    }
    if constexpr (!bulk) cp_async_commit();
  };
  // Waits for stage number i of this warp.
  const auto wait = [&](int i) {
    if constexpr (bulk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      const unsigned bar = smem_address(ring + (i % stages) * stage_layout::bytes + stage_layout::barrier);
      const unsigned parity = (i / stages) & 1;
      unsigned done = 0;
      while (!done)
        asm volatile(
            "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
#endif
    } else {
      cp_async_wait<stages - 2>();
      __syncwarp();  // the stage's scales were copied by other lanes
    }
  };

  // Oᵀ[D x heads] in m-tiles of 16 head-dimension indices: o[mt][hn] rows g, g + 8 are indices
  // (D / 8) g + 2 mt, + 1; columns 2t, 2t + 1 are heads 8 hn + 2t, + 1. m and l per lane's heads
  // (l: the lane's tokens only; summed over g at the end).
  float o[MT][NH][4] = {}, m[NH][2], l[NH][2];
#pragma unroll
  for (int hn = 0; hn < NH; ++hn) m[hn][0] = m[hn][1] = neg_inf, l[hn][0] = l[hn][1] = 0.0f;
#pragma unroll
  for (int i = 0; i < stages - 1; ++i) issue(i);
  // Two consecutive tiles an iteration (G <= 8), one or two iterations a stage: their loads,
  // dequantization and mma chains are independent, so each fills the other's latency, and the
  // softmax's maximum, its shuffles and the rescale check are paid once for both.
  for (int i = 0, tile0 = first; tile0 < end; ++i, tile0 += ctiles * decode_warps) {
    wait(i);
    // Every lane is past the previous stage, which the next copies overwrite (ordered after those
    // generic reads for the copy engine by the proxy fence).
    __syncwarp();
    if constexpr (bulk) asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    issue(i + stages - 1);
    const uint8_t* stage = ring + (i % stages) * stage_layout::bytes;
#pragma unroll 1
    for (int h = 0; h < ctiles && tile0 + h < end; h += pair) {
      const int tile = tile0 + h;
      // A second tile past the end was not copied: it reads the first's rows with every token
      // masked and every value zeroed but row 0's (finite, weighted 0).
      const uint8_t *keys[pair], *values[pair], *kscales[pair], *vscales[pair], *kzeros[pair], *vzeros[pair];
      int last[pair];
#pragma unroll
      for (int u = 0; u < pair; ++u) {
        const bool has = tile + u < end;
        const int at = h + (has ? u : 0);
        keys[u] = stage + stage_layout::keys + at * 16 * key_stride;
        values[u] = stage + stage_layout::values + at * 16 * value_stride;
        kscales[u] = stage + stage_layout::key_scales + at * scale_bytes;
        vscales[u] = stage + stage_layout::value_scales + at * scale_bytes;
        kzeros[u] = stage + stage_layout::key_zeros + at * zero_bytes;
        vzeros[u] = stage + stage_layout::value_zeros + at * zero_bytes;
        last[u] = has ? length - 1 - (tile + u) * 16 : 0;
      }
      uint32_t v[pair][4][VW];
      float vs[pair][4];
      unsigned vz[pair][4];
#pragma unroll
      for (int u = 0; u < pair; ++u)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int row = 2 * t + (r & 1) + 8 * (r >> 1);
          if constexpr (steps) load_bytes<lane_value_bytes>(v[u][r], values[u] + row * value_stride, g);
          else load_words<VW>(v[u][r], values[u] + row * value_stride + (D / 8) * g * bits / 8);
          if (row > last[u]) {  // past the length: whatever the storage holds (an FP8 NaN code, say) must not reach P·V
#pragma unroll
            for (int w = 0; w < VW; ++w) v[u][r][w] = 0u;
          }
          const int at = min(row, last[u]) * kv.groups + v_group;
          vs[u][r] = load_scale<scale_type>(vscales[u], at);
          vz[u][r] = (Scheme::has_zero ? vzeros[u][at] : 0u) ^ kv_scheme<Scheme>::implicit_zero;
        }

      // Scoresᵀ = K · qᵀ: A is the tile's keys (rows g, g + 8 are key rows g, g + 8), B the queries;
      // s[u][hn]: c0, c1 token g, heads 8 hn + 2t, + 1; c2, c3 token g + 8.
      float s[pair][NH][4], s_odd[pair][NH][4];  // even and odd k-steps in two chains a tile
#pragma unroll
      for (int u = 0; u < pair; ++u)
#pragma unroll
        for (int hn = 0; hn < NH; ++hn)
#pragma unroll
          for (int x = 0; x < 4; ++x) s[u][hn][x] = s_odd[u][hn][x] = 0.0f;
      // Lane t's key words of one row. steps: step j's codes are a word (8-bit) at byte 16 j + 4 t; 4-bit,
      // two bytes at 8 j + 2 t, steps 2i and 2i + 1 interleaved bytewise into word i (key_fragment takes
      // bytes 0 and 2 for the even step, 1 and 3 for the odd one). Else key_pieces pieces of kp bytes.
      const auto load_key_words = [&](uint32_t (&w)[KW], const uint8_t* key_row) {
        if constexpr (steps) {
#pragma unroll
          for (int i = 0; i < KW; ++i) {
            if constexpr (bits == 8) {
              w[i] = *reinterpret_cast<const uint32_t*>(key_row + 16 * i + 4 * t);
            } else {
              const uint32_t even = *reinterpret_cast<const unsigned short*>(key_row + 16 * i + 2 * t);
              const uint32_t odd = 2 * i + 1 < KS ? *reinterpret_cast<const unsigned short*>(key_row + 16 * i + 8 + 2 * t) : 0u;
              w[i] = __byte_perm(even, odd, 0x5140);
            }
          }
        } else {
#pragma unroll
          for (int piece = 0; piece < key_pieces; ++piece) load_words<kp / 4>(w + piece * kp / 4, key_row + (4 * piece + t) * kp);
        }
      };
      if constexpr (IntKeys) {
        // Integer keys (signed 4-bit codes, one scale a row): the codes as int8 16 x code (a key word's
        // even nibbles shifted up, its odd ones masked in place), times q's high and low parts in two
        // int32 chains, exact; the score is (256 hi + lo) x q's step / 16 x the row's scale in fp32.
        int acc[pair][NH][2][4];
        uint32_t k[pair][2][KW];
        float ks[pair][2];
#pragma unroll
        for (int u = 0; u < pair; ++u) {
#pragma unroll
          for (int hn = 0; hn < NH; ++hn)
#pragma unroll
            for (int x = 0; x < 4; ++x) acc[u][hn][0][x] = acc[u][hn][1][x] = 0;
#pragma unroll
          for (int n = 0; n < 2; ++n) {
            load_key_words(k[u][n], keys[u] + (g + 8 * n) * key_stride);
            ks[u][n] = load_scale<scale_type>(kscales[u], min(g + 8 * n, last[u]));
          }
        }
#pragma unroll
        for (int i = 0; i < KW; ++i)
#pragma unroll
          for (int u = 0; u < pair; ++u) {
            const uint32_t a[4] = {(k[u][0][i] << 4) & 0xf0f0f0f0u, (k[u][1][i] << 4) & 0xf0f0f0f0u,
                                   k[u][0][i] & 0xf0f0f0f0u, k[u][1][i] & 0xf0f0f0f0u};
#pragma unroll
            for (int hn = 0; hn < NH; ++hn) {
              mma_s8_16832(acc[u][hn][0], a, qi[i][hn][0][0], qi[i][hn][1][0]);
              mma_s8_16832(acc[u][hn][1], a, qi[i][hn][0][1], qi[i][hn][1][1]);
            }
          }
#pragma unroll
        for (int u = 0; u < pair; ++u)
#pragma unroll
          for (int hn = 0; hn < NH; ++hn)
#pragma unroll
            for (int x = 0; x < 4; ++x)
              s[u][hn][x] = fmaf(__int2float_rn(acc[u][hn][0][x]), 256.0f, __int2float_rn(acc[u][hn][1][x])) *
                            (uq[hn][x & 1] * ks[u][x >> 1]);
      } else {
        // The scale (and zero point) of group grp of the tile's key row g + 8 n.
        const auto key_params = [&](int u, int n, int grp) {
          const int at = min(g + 8 * n, last[u]) * kv.groups + grp;
          const float scale = load_scale<scale_type>(kscales[u], at);
          const unsigned zero = (Scheme::has_zero ? kzeros[u][at] : 0u) ^ kv_scheme<Scheme>::implicit_zero;
          return codec::params(scale, scale, zero, zero);
        };
        uint32_t k[pair][2][KW];
        constexpr int param_sets = steps ? 1 : key_pieces;  // piece layout: a piece lies in one group
        typename codec::row_params p[pair][2][param_sets];
#pragma unroll
        for (int u = 0; u < pair; ++u)
#pragma unroll
          for (int n = 0; n < 2; ++n) {
            load_key_words(k[u][n], keys[u] + (g + 8 * n) * key_stride);
            if constexpr (!steps) {  // piece layout: a piece's parameters once a tile
#pragma unroll
              for (int piece = 0; piece < key_pieces; ++piece) p[u][n][piece] = key_params(u, n, k_group[piece]);
            }
          }
#pragma unroll
        for (int j = 0; j < KS; ++j)
#pragma unroll
          for (int u = 0; u < pair; ++u) {
            uint32_t a[4];
            int set = 0;
            if constexpr (steps) {
              if (j == 0 || step_group[j] != step_group[j - 1])  // the lane's codes enter a new group
                p[u][0][0] = key_params(u, 0, step_group[j]), p[u][1][0] = key_params(u, 1, step_group[j]);
            } else {
              set = j / (KS / key_pieces);
            }
            codec::key_fragment(k[u][0], j, p[u][0][set], a[0], a[2]);
            codec::key_fragment(k[u][1], j, p[u][1][set], a[1], a[3]);
#pragma unroll
            for (int hn = 0; hn < NH; ++hn) mma_16816(j % 2 ? s_odd[u][hn] : s[u][hn], a, qb[j][hn][0], qb[j][hn][1]);
          }
      }
      // Online softmax (base 2) per head over both tiles; tokens past the end masked.
      float tile_max[NH][2];
#pragma unroll
      for (int hn = 0; hn < NH; ++hn) {
        tile_max[hn][0] = tile_max[hn][1] = neg_inf;
#pragma unroll
        for (int u = 0; u < pair; ++u) {
          const int tok = (tile + u) * 16 + g;
#pragma unroll
          for (int x = 0; x < 4; ++x) {
            if constexpr (!IntKeys) s[u][hn][x] += s_odd[u][hn][x];
            if (tok + 8 * (x >> 1) >= t_end) s[u][hn][x] = neg_inf;
          }
          tile_max[hn][0] = fmaxf(tile_max[hn][0], fmaxf(s[u][hn][0], s[u][hn][2]));
          tile_max[hn][1] = fmaxf(tile_max[hn][1], fmaxf(s[u][hn][1], s[u][hn][3]));
        }
      }
      float corr[NH][2], base[NH][2];
      bool rescale = false;
#pragma unroll
      for (int hn = 0; hn < NH; ++hn)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& mx = tile_max[hn][e];
#pragma unroll
          for (int x = 4; x < 32; x *= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, x));
          // The reference maximum moves only when the tiles' exceeds it by more than 2^8 (exponentials
          // stay <= 256, far inside fp16), so the accumulator is seldom rescaled (FlashAttention-4's idea).
          corr[hn][e] = 1.0f;
          if (mx > m[hn][e] + 8.0f) {  // always taken for the first tile with a token (m = -inf)
            corr[hn][e] = exp2f(m[hn][e] - mx);  // 0 while nothing was seen
            m[hn][e] = mx;
            rescale = true;
          }
          base[hn][e] = m[hn][e] == neg_inf ? 0.0f : m[hn][e];
        }
      // P (token rows, head columns) to fp16, then transposed 8 x 8 at a time into Pᵀ's B fragments
      // (column g: head 8 hn + g; rows: tokens 2t, 2t + 1 and 2t + 8, + 9).
      uint32_t pb[pair][NH][2];
#pragma unroll
      for (int hn = 0; hn < NH; ++hn) {
        float sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int u = 0; u < pair; ++u) {
          float p[4];
#pragma unroll
          for (int x = 0; x < 4; ++x) p[x] = exp2f(s[u][hn][x] - base[hn][x & 1]);
          sum[0] += p[0] + p[2];
          sum[1] += p[1] + p[3];
          pb[u][hn][0] = transpose_8x8(h2_bits(__floats2half2_rn(p[0], p[1])));
          pb[u][hn][1] = transpose_8x8(h2_bits(__floats2half2_rn(p[2], p[3])));
        }
        l[hn][0] = l[hn][0] * corr[hn][0] + sum[0];
        l[hn][1] = l[hn][1] * corr[hn][1] + sum[1];
      }
      if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int hn = 0; hn < NH; ++hn)
#pragma unroll
            for (int x = 0; x < 4; ++x) o[mt][hn][x] *= corr[hn][x & 1];
      }
      // Oᵀ += Vᵀ · Pᵀ: A is the tile's values, rows g, g + 8 of m-tile mt the lane's head-dimension
      // indices 2 mt, 2 mt + 1 (value_pairs' order), columns its tokens.
#pragma unroll
      for (int u = 0; u < pair; ++u) {
        const auto p01 = codec::params(vs[u][0], vs[u][1], vz[u][0], vz[u][1]);
        const auto p89 = codec::params(vs[u][2], vs[u][3], vz[u][2], vz[u][3]);
#pragma unroll
        for (int w = 0; w < VW; ++w) {
          uint32_t b0[per_word], b1[per_word];
          codec::value_pairs(v[u][0][w], v[u][1][w], p01, b0);
          codec::value_pairs(v[u][2][w], v[u][3][w], p89, b1);
#pragma unroll
          for (int c = 0; c < per_word / 2; ++c) {
            const int mt = w * per_word / 2 + c;
            if (mt >= MT) break;  // the step layout's last word is zero-padded past the lane's share
            const uint32_t a[4] = {b0[2 * c], b0[2 * c + 1], b1[2 * c], b1[2 * c + 1]};
#pragma unroll
            for (int hn = 0; hn < NH; ++hn) mma_16816(o[mt][hn], a, pb[u][hn][0], pb[u][hn][1]);
          }
        }
      }
    }
  }
  if constexpr (!bulk) cp_async_wait<0>();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __syncwarp();
  if (lane == 0) {  // every copy was waited for; the barriers' memory becomes the merge buffer
#pragma unroll
    for (int i = 0; i < stages; ++i)
      asm volatile("mbarrier.inval.shared::cta.b64 [%0];" ::"r"(smem_address(ring + i * stage_layout::bytes + stage_layout::barrier)));
  }
#endif
  float* o_s = reinterpret_cast<float*>(smem);  // [warps][16][D], over the ring (after the barrier below)

  // Merge the block's warps: each head's max and sum, then the rescaled O summed over warps.
#pragma unroll
  for (int hn = 0; hn < NH; ++hn)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
#pragma unroll
      for (int x = 4; x < 32; x *= 2) l[hn][e] += __shfl_xor_sync(0xffffffffu, l[hn][e], x);
      if (g == 0) m_s[warp][8 * hn + 2 * t + e] = m[hn][e], l_s[warp][8 * hn + 2 * t + e] = l[hn][e];
    }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < group) {
    float mx = neg_inf, sum = 0.0f;
    for (int w = 0; w < decode_warps; ++w) mx = fmaxf(mx, m_s[w][threadIdx.x]);
    for (int w = 0; w < decode_warps; ++w)
      if (m_s[w][threadIdx.x] != neg_inf) sum += l_s[w][threadIdx.x] * exp2f(m_s[w][threadIdx.x] - mx);
    row_max[threadIdx.x] = mx, row_sum[threadIdx.x] = sum;
  }
  __syncthreads();
#pragma unroll
  for (int hn = 0; hn < NH; ++hn)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int row = 8 * hn + 2 * t + e;
      if (row >= group) continue;
      const float f = m[hn][e] == neg_inf ? 0.0f : exp2f(m[hn][e] - row_max[row]);
      float* dst = o_s + (warp * 16 + row) * D + (D / 8) * g;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        dst[2 * mt] = f * o[mt][hn][e];
        dst[2 * mt + 1] = f * o[mt][hn][2 + e];
      }
    }
  __syncthreads();
  for (int idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
    const int row = idx / D, d = idx % D;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < decode_warps; ++w) sum += o_s[(w * 16 + row) * D + d];
    const std::size_t qh = (size_t)seq * q_heads + (size_t)head * group + row;
    if (splits == 1) {
      out[qh * D + d] = from_float<T>(row_sum[row] > 0.0f ? sum / row_sum[row] : 0.0f);
    } else {
      float* part = work + (qh * splits + split) * (D + 2);
      part[d] = sum;
      if (d == 0) part[D] = row_max[row], part[D + 1] = row_sum[row];
    }
  }
}

/// Merges the splits of each (sequence, query head) by log-sum-exp: one block of D threads each.
template <int D, class T>
__global__ void __launch_bounds__(D) decode_merge_kernel(const float* __restrict__ work, int splits, T* __restrict__ out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent of decode_kernel (sm_90): waits until its writes are visible.
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  const std::size_t qh = blockIdx.x;
  const float* part = work + qh * splits * (D + 2);
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, part[s * (D + 2) + D]);
  float sum = 0.0f, acc = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float* p = part + s * (D + 2);
    if (p[D] == -INFINITY) continue;  // a split past the sequence's end
    const float w = exp2f(p[D] - mx);
    sum += w * p[D + 1];
    acc += w * p[threadIdx.x];
  }
  out[qh * D + threadIdx.x] = from_float<T>(sum > 0.0f ? acc / sum : 0.0f);
}

/// Picks the split (unless given), reserves the workspace and launches the kernels.
template <class Scheme, int D, int MaxG, class T>
void decode_launch(const T* q, const kv_params& kv, int batch, int group, int max_length, float q_scale,
                   const decode_options& options, decode_workspace& workspace, T* out, cudaStream_t stream) {
  // Signed 4-bit codes with one scale a row: keys on the integer tensor cores (decode_kernel's IntKeys).
  constexpr bool int_keys = Scheme::bits == 4 && !Scheme::has_zero && kv_scheme<Scheme>::implicit_zero != 0 &&
                            !kv_scheme<Scheme>::is_e4m3;
  const auto kernel = int_keys && kv.groups == 1 ? decode_kernel<Scheme, D, MaxG, T, int_keys> : decode_kernel<Scheme, D, MaxG, T>;
  const int smem = decode_stage<Scheme, D, decode_copy_tiles(Scheme::bits, MaxG, D)>::smem_bytes;
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  // All of the SM's L1 as shared memory, so that the rings of several blocks fit side by side.
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
  int split_tokens = options.split_tokens;
  if (split_tokens == 0) {
    // About 2 blocks an SM in all, at least 256 tokens each, rounded to 64: on an H100 (bench/cuda)
    // fewer, longer blocks beat a full wave of resident ones (each block's pipeline fill and merge
    // cost about a tile a warp), while 1 block an SM leaves too few warps to hide the latency.
    const long long pairs = 1LL * batch * kv.kv_heads;
    const long long per_pair = std::max(1LL, 2LL * sm_count() / pairs);
    const long long tokens = (max_length + per_pair - 1) / per_pair;
    split_tokens = static_cast<int>(std::max(256LL, (tokens + 63) / 64 * 64));
  }
  const int splits = std::max(1, (max_length + split_tokens - 1) / split_tokens);
  LOWBIT_CHECK(splits <= 65535, "cuda::decode: " << splits << " splits (raise split_tokens)");
  float* work = nullptr;
  if (splits > 1) work = workspace.reserve(static_cast<std::size_t>(batch) * kv.kv_heads * group * splits * (D + 2));
  kernel<<<dim3(splits, kv.kv_heads, batch), decode_warps * 32, smem, stream>>>(
      q, kv, group, q_scale, split_tokens, splits, work, out);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
  if (splits > 1) {
    // sm_90: a programmatic dependent launch, so that the merge's launch overlaps the decode's tail.
    // Only where the kernels were compiled for sm_90+ (their trigger and wait): not for compute_80
    // PTX that the driver compiles for an sm_90 card.
    cudaFuncAttributes merge_attributes{};
    LOWBIT_CUDA_CHECK(cudaFuncGetAttributes(&merge_attributes, decode_merge_kernel<D, T>));
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(static_cast<unsigned>(batch * kv.kv_heads * group));
    config.blockDim = dim3(D);
    config.stream = stream;
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    config.attrs = &attribute;
    config.numAttrs = merge_attributes.ptxVersion >= 90 ? 1 : 0;
    LOWBIT_CUDA_CHECK(cudaLaunchKernelEx(&config, decode_merge_kernel<D, T>, static_cast<const float*>(work), splits, out));
  }
}

}  // namespace detail

/// out[b][j] = softmax(q[b][j] · K[b][h]ᵀ · scale) · V[b][h] for every sequence b of the cache (its
/// length after the uploads and appends the view was taken after; a sequence with no tokens gives
/// zeros) and query head j, h = j / (q_heads / kv_heads), on `stream` (asynchronous). q and out:
/// device fp16 (__half) or bf16 (__nv_bfloat16) [batch][q_heads][head_dim], one type for both; bf16
/// q is rounded to fp16 after the scale like fp16 q (q · scale · log2 e must fit fp16), and bf16 out
/// is rounded from fp32 (tolerance 2^-8 |out| instead of 2^-10).
/// Preconditions, checked: q_heads a multiple of kv_heads with at most 16 query heads per KV head;
/// q, out non-null; split_tokens a multiple of 64 (or 0). out must not overlap q. The cache must live
/// on the current device; the workspace is used by one call at a time.
template <class Scheme, class T>
void decode(const T* q, const kv_view<Scheme>& cache, T* out, std::size_t q_heads, decode_workspace& workspace,
            cudaStream_t stream = nullptr, const decode_options& options = {}) {
  static_assert(std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value,
                "cuda::decode: q and out are __half or __nv_bfloat16");
  LOWBIT_CHECK(q != nullptr && out != nullptr, "cuda::decode: q or out is null");
  LOWBIT_CHECK(cache.keys.codes != nullptr && cache.lengths != nullptr, "cuda::decode: the cache is empty");
  LOWBIT_CHECK(q_heads > 0 && q_heads % cache.kv_heads == 0,
               "cuda::decode: q_heads=" << q_heads << " must be a positive multiple of kv_heads=" << cache.kv_heads);
  const std::size_t group = q_heads / cache.kv_heads;
  LOWBIT_CHECK(group <= 16, "cuda::decode: " << group << " query heads per KV head (at most 16)");
  LOWBIT_CHECK(options.split_tokens >= 0 && options.split_tokens % 64 == 0,
               "cuda::decode: split_tokens=" << options.split_tokens << " must be a multiple of 64");
  LOWBIT_CHECK(cache.batch <= 65535 && cache.kv_heads <= 65535, "cuda::decode: batch or kv_heads too large for the grid");
  const int d = static_cast<int>(cache.head_dim);
  int max_length = 0;
  for (int n : cache.host_lengths) max_length = std::max(max_length, n);
  detail::kv_params kv{cache.keys,
                       cache.values,
                       cache.lengths,
                       cache.tables,
                       static_cast<int>(cache.kv_heads),
                       static_cast<int>(cache.capacity),
                       static_cast<int>(cache.page_tokens),
                       static_cast<int>(cache.table_width),
                       static_cast<int>(cache.groups),
                       static_cast<int>(cache.group_size)};
  const float scale = options.scale != 0.0f ? options.scale : 1.0f / std::sqrt(static_cast<float>(d));
  const float q_scale = scale * 1.4426950408889634f;  // log2(e): the kernel uses exp2
  const int batch = static_cast<int>(cache.batch), g = static_cast<int>(group);
  const auto run = [&](auto launch) { launch(q, kv, batch, g, max_length, q_scale, options, workspace, out, stream); };
  if (d == 64) {
    if (group <= 8) run(detail::decode_launch<Scheme, 64, 8, T>);
    else run(detail::decode_launch<Scheme, 64, 16, T>);
  } else if (d == 80) {
    if (group <= 8) run(detail::decode_launch<Scheme, 80, 8, T>);
    else run(detail::decode_launch<Scheme, 80, 16, T>);
  } else if (d == 96) {
    if (group <= 8) run(detail::decode_launch<Scheme, 96, 8, T>);
    else run(detail::decode_launch<Scheme, 96, 16, T>);
  } else if (d == 128) {
    if (group <= 8) run(detail::decode_launch<Scheme, 128, 8, T>);
    else run(detail::decode_launch<Scheme, 128, 16, T>);
  } else {
    LOWBIT_CHECK(d == 256, "cuda::decode: head_dim=" << d << " (64, 80, 96, 128 or 256)");
    if (group <= 8) run(detail::decode_launch<Scheme, 256, 8, T>);
    else run(detail::decode_launch<Scheme, 256, 16, T>);
  }
}

}  // namespace cuda
}  // namespace lowbit
