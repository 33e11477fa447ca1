/// \file
/// \brief cuda::decode: decode attention (one query token per sequence) over a low-bit KV cache on
/// tensor cores; multi-head, grouped-query or multi-query; split-K flash-decoding.
///
///   const auto gpu_cache = lowbit::cuda::upload(cpu_cache);   // once (kv_cache.cuh)
///   lowbit::cuda::decode_workspace ws;
///   lowbit::cuda::decode(q, gpu_cache.view(), out, q_heads, ws, stream);  // q, out: fp16 [B][Hq][d]
///
/// The regime is memory-bound (each cache byte is used by the G = q_heads / kv_heads query heads
/// of its group and never again), so the kernel's job is to stream the codes once, as 16-byte
/// loads, and keep the arithmetic under the memory time. Design:
///  - Grid: (split, KV head, sequence). A block of 4 warps takes split_tokens tokens of one (sequence,
///    KV head); each warp takes every 4th tile of 16 tokens (tiles never cross a page) with the next
///    tile's codes loaded into registers while the current one is computed.
///  - Scores S[G x 16] = Q · Kᵀ with mma.m16n8k16: the group's query heads are A (rows; up to 16),
///    the tile's keys B. A lane reads its quarter of a key row as one or two 16-byte loads and
///    dequantizes in registers (integers by the magic number 0x6400 | code = fp16 1024 + code, FP8
///    E4M3 by cvt on sm_89+), times the group scale in fp16; the head dimension is consumed in a
///    permuted order that matches those loads, and q is loaded once in the same permutation (a dot
///    product does not care about the order of its terms).
///  - Online softmax in fp32 on the score fragments (base-2 exponentials, log2(e) folded into q);
///    the accumulator is rescaled only when some running maximum of the warp grew.
///  - O[G x d] += P · V with mma: the score fragment is already P's A fragment (the FlashAttention-2
///    register reuse); V's B fragment pairs tokens 2t, 2t + 1 at one head-dimension index, built
///    from two rows' bytes by byte permutes; output columns are a permutation of d.
///  - The 4 warps merge in shared memory; with several splits, (max, sum, unnormalized O) go to the
///    workspace and a second kernel merges the splits by log-sum-exp and writes fp16.
/// Numerics: q (times scale · log2 e), dequantized K and V, and P rounded to fp16; products
/// accumulated in fp32 on tensor cores; softmax state in fp32; output rounded to fp16. Dequantized
/// values must fit fp16 (|value| < 65504). Tolerance against the CPU decode (tests/cuda): 2^-7 times
/// the largest |V| of the (sequence, KV head).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "gemm.cuh"
#include "kv_cache.cuh"

namespace lowbit {
namespace cuda {

/// Decode launch options.
struct decode_options {
  float scale = 0.0f;    ///< multiplies q·k; 0: 1 / sqrt(head_dim)
  int split_tokens = 0;  ///< tokens per block (a multiple of 64); 0: chosen from the shape and the GPU
  /// Each warp asks L2 for its tile this many tiles ahead (prefetch.global.L2, no registers held),
  /// beyond the one tile it keeps loading into registers; 0: off.
  int prefetch_tiles = 2;
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

/// The kernel's copy of a kv_view (trivially copyable).
struct kv_params {
  kv_rows_view keys, values;
  const int* lengths;
  const uint32_t* tables;
  int kv_heads, capacity, page_tokens, table_width, groups, group_size;
};

template <class Scale>
__device__ __forceinline__ float load_scale(const void* scales, std::size_t i) {
  if constexpr (std::is_same<Scale, float>::value) {
    return __ldg(static_cast<const float*>(scales) + i);
  } else {
    const unsigned short bits = __ldg(static_cast<const unsigned short*>(scales) + i);
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

/// Head-dimension index of the lane's k-step j element (register half r, element e): the order in
/// which key_fragment consumes the lane's quarter [E t, E t + E) of a key row (E = D / 4).
template <int Bits, int D>
__host__ __device__ constexpr int key_dim(int t, int j, int r, int e) {
  return Bits == 8 ? (D / 4) * t + 4 * j + 2 * r + e : (D / 4) * t + 8 * (j >> 1) + 2 * (j & 1) + r + 4 * e;
}

template <int Words>
__device__ __forceinline__ void load_words(uint32_t (&w)[Words], const uint8_t* p) {
  if constexpr (Words % 4 == 0) {
#pragma unroll
    for (int i = 0; i < Words / 4; ++i) {
      const ::uint4 v = __ldg(reinterpret_cast<const ::uint4*>(p) + i);
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  } else if constexpr (Words == 2) {
    const ::uint2 v = __ldg(reinterpret_cast<const ::uint2*>(p));
    w[0] = v.x, w[1] = v.y;
  } else {
    static_assert(Words == 1, "1, 2 or a multiple of 4 words");
    w[0] = __ldg(reinterpret_cast<const uint32_t*>(p));
  }
}

/// One block: split blockIdx.x of KV head blockIdx.y of sequence blockIdx.z, G <= MaxG query heads.
/// With splits == 1 it writes the normalized fp16 output; else (max, sum) and unnormalized O
/// partials to work ([B][Hkv][G][splits] x (D + 2) floats: O, then max and sum).
template <class Scheme, int D, int MaxG>
__global__ void __launch_bounds__(decode_warps * 32)
    decode_kernel(const __half* __restrict__ q, kv_params kv, int group, float q_scale, int split_tokens, int splits,
                  int prefetch_tiles, float* __restrict__ work, __half* __restrict__ out) {
  using codec = kv_codec<Scheme>;
  using scale_type = typename Scheme::scale_type;
  constexpr int bits = Scheme::bits, E = D / 4, KW = E * bits / 32, VW = D / 8 * bits / 32, KS = D / 16, NT = D / 8;
  constexpr int row_bytes = D * bits / 8;
  constexpr int per_word = 32 / bits;  // head-dimension indices a V word covers
  constexpr float neg_inf = -INFINITY;
  __shared__ float m_s[decode_warps][16], l_s[decode_warps][16], row_max[16], row_sum[16];
  extern __shared__ float o_s[];  // [warps][16][D]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int split = blockIdx.x, head = blockIdx.y, seq = blockIdx.z;
  const int length = kv.lengths[seq];
  const int t_begin = split * split_tokens, t_end = min(length, t_begin + split_tokens);
  const int q_heads = kv.kv_heads * group;

  // The group's queries as A fragments (rows: query heads g and g + 8; zero past the group).
  uint32_t qa[KS][4];
  {
    const __half* q0 = q + ((size_t)seq * q_heads + (size_t)head * group) * D;
#pragma unroll
    for (int j = 0; j < KS; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = g + 8 * (i & 1), r = i >> 1;
        float lo = 0.0f, hi = 0.0f;
        if (row < group && (MaxG > 8 || i % 2 == 0)) {
          lo = q_scale * __half2float(q0[row * D + key_dim<bits, D>(t, j, r, 0)]);
          hi = q_scale * __half2float(q0[row * D + key_dim<bits, D>(t, j, r, 1)]);
        }
        qa[j][i] = h2_bits(__floats2half2_rn(lo, hi));
      }
  }

  // Codes of one tile: key rows g, g + 8 (the lane's quarter), value rows 2t, 2t + 1, 2t + 8, 2t + 9
  // (the lane's eighth), and their group scales and zero points.
  struct tile_codes {
    uint32_t k[2][KW], v[4][VW];
    float ks[2], vs[4];
    unsigned kz[2], vz[4];
  };
  const int k_group = (E * t) / kv.group_size, v_group = ((D / 8) * g) / kv.group_size;
  const auto tile_row = [&](int tok0) -> std::size_t {  // storage row of token tok0 (a tile's rows are consecutive)
    if (kv.page_tokens) {
      const uint32_t page = __ldg(kv.tables + (size_t)seq * kv.table_width + tok0 / kv.page_tokens);
      return ((size_t)page * kv.kv_heads + head) * kv.page_tokens + tok0 % kv.page_tokens;
    }
    return ((size_t)seq * kv.kv_heads + head) * kv.capacity + tok0;
  };
  // L2 prefetch of a whole tile: lanes 0..15 take the key rows, 16..31 the value rows, one 128-byte
  // line each (a tile's 16 rows are 16 row_bytes apart: 1 or 2 lines a row for 4 / 8 bits).
  const auto prefetch_tile = [&](int tile) {
    const int tok0 = tile * 16, i = lane & 15;
    if (tok0 + i >= t_end) return;
    const std::size_t row = tile_row(tok0) + i;
    const uint8_t* base = (lane < 16 ? kv.keys.codes : kv.values.codes) + row * row_bytes;
#pragma unroll
    for (int b = 0; b < row_bytes; b += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(base + b));
  };
  const auto load_tile = [&](int tile, tile_codes& c) {
    const int tok0 = tile * 16, last = length - 1 - tok0;  // rows past the length read the last one
    const std::size_t row0 = tile_row(tok0);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const std::size_t row = row0 + min(g + 8 * r, last);
      load_words(c.k[r], kv.keys.codes + row * row_bytes + E * t * bits / 8);
      c.ks[r] = load_scale<scale_type>(kv.keys.scales, row * kv.groups + k_group);
      c.kz[r] = (Scheme::has_zero ? __ldg(kv.keys.zeros + row * kv.groups + k_group) : 0u) ^ kv_scheme<Scheme>::implicit_zero;
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const std::size_t row = row0 + min(2 * t + (r & 1) + 8 * (r >> 1), last);
      load_words(c.v[r], kv.values.codes + row * row_bytes + (D / 8) * g * bits / 8);
      c.vs[r] = load_scale<scale_type>(kv.values.scales, row * kv.groups + v_group);
      c.vz[r] = (Scheme::has_zero ? __ldg(kv.values.zeros + row * kv.groups + v_group) : 0u) ^ kv_scheme<Scheme>::implicit_zero;
    }
  };

  float o[NT][4] = {}, m[2] = {neg_inf, neg_inf}, l[2] = {0.0f, 0.0f};
  const int first = t_begin / 16 + warp, end = (t_end + 15) / 16;
  tile_codes next;
  if (first < end) load_tile(first, next);
  for (int tile = first; tile < end; tile += decode_warps) {
    const tile_codes cur = next;
    if (tile + decode_warps < end) load_tile(tile + decode_warps, next);
    if (prefetch_tiles > 0 && tile + (prefetch_tiles + 1) * decode_warps < end)
      prefetch_tile(tile + (prefetch_tiles + 1) * decode_warps);

    // Scores: s[n] for tokens 8n + 2t, + 1 (c0, c1: head g; c2, c3: head g + 8).
    float s[2][4] = {};
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      const auto p = codec::params(cur.ks[n], cur.ks[n], cur.kz[n], cur.kz[n]);
#pragma unroll
      for (int j = 0; j < KS; ++j) {
        uint32_t b0, b1;
        codec::key_fragment(cur.k[n], j, p, b0, b1);
        mma_16816(s[n], qa[j], b0, b1);
      }
    }
    // Online softmax (base 2); tokens past the end masked.
    const int tok = tile * 16 + 2 * t;
    float tile_max[2] = {neg_inf, neg_inf};
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (tok + 8 * n + (i & 1) >= t_end) s[n][i] = neg_inf;
        tile_max[i >> 1] = fmaxf(tile_max[i >> 1], s[n][i]);
      }
    float corr[2], base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float new_max = fmaxf(m[r], tile_max[r]);
      base[r] = new_max == neg_inf ? 0.0f : new_max;
      corr[r] = exp2f(m[r] - base[r]);  // 0 while nothing was seen (m = -inf)
      m[r] = new_max;
    }
    uint32_t pa[4];
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float p0 = exp2f(s[n][2 * r] - base[r]), p1 = exp2f(s[n][2 * r + 1] - base[r]);
        l[r] = l[r] * (n == 0 ? corr[r] : 1.0f) + p0 + p1;
        pa[2 * n + r] = h2_bits(__floats2half2_rn(p0, p1));
      }
    if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) o[nt][0] *= corr[0], o[nt][1] *= corr[0], o[nt][2] *= corr[1], o[nt][3] *= corr[1];
    }
    // O += P · V: n-tile nt, column g is head-dimension index (D / 8) g + nt.
    const auto p01 = codec::params(cur.vs[0], cur.vs[1], cur.vz[0], cur.vz[1]);
    const auto p89 = codec::params(cur.vs[2], cur.vs[3], cur.vz[2], cur.vz[3]);
#pragma unroll
    for (int w = 0; w < VW; ++w) {
      uint32_t b0[per_word], b1[per_word];
      codec::value_pairs(cur.v[0][w], cur.v[1][w], p01, b0);
      codec::value_pairs(cur.v[2][w], cur.v[3][w], p89, b1);
#pragma unroll
      for (int i = 0; i < per_word; ++i) mma_16816(o[w * per_word + i], pa, b0[i], b1[i]);
    }
  }

  // Merge the block's warps: each row's max and sum, then the rescaled O summed over warps.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if (t == 0) m_s[warp][g + 8 * r] = m[r], l_s[warp][g + 8 * r] = l[r];
  }
  __syncthreads();
  if (threadIdx.x < 16) {
    float mx = neg_inf, sum = 0.0f;
    for (int w = 0; w < decode_warps; ++w) mx = fmaxf(mx, m_s[w][threadIdx.x]);
    for (int w = 0; w < decode_warps; ++w)
      if (m_s[w][threadIdx.x] != neg_inf) sum += l_s[w][threadIdx.x] * exp2f(m_s[w][threadIdx.x] - mx);
    row_max[threadIdx.x] = mx, row_sum[threadIdx.x] = sum;
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + 8 * r;
    if (row >= group) continue;
    const float f = m[r] == neg_inf ? 0.0f : exp2f(m[r] - row_max[row]);
    float* dst = o_s + (warp * 16 + row) * D;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      dst[(D / 8) * (2 * t) + nt] = f * o[nt][2 * r];
      dst[(D / 8) * (2 * t + 1) + nt] = f * o[nt][2 * r + 1];
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
      out[qh * D + d] = __float2half(row_sum[row] > 0.0f ? sum / row_sum[row] : 0.0f);
    } else {
      float* part = work + (qh * splits + split) * (D + 2);
      part[d] = sum;
      if (d == 0) part[D] = row_max[row], part[D + 1] = row_sum[row];
    }
  }
}

/// Merges the splits of each (sequence, query head) by log-sum-exp: one block of D threads each.
template <int D>
__global__ void __launch_bounds__(D) decode_merge_kernel(const float* __restrict__ work, int splits, __half* __restrict__ out) {
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
  out[qh * D + threadIdx.x] = __float2half(sum > 0.0f ? acc / sum : 0.0f);
}

/// Picks the split (unless given), reserves the workspace and launches the kernels.
template <class Scheme, int D, int MaxG>
void decode_launch(const __half* q, const kv_params& kv, int batch, int group, int max_length, float q_scale,
                   const decode_options& options, decode_workspace& workspace, __half* out, cudaStream_t stream) {
  const auto kernel = decode_kernel<Scheme, D, MaxG>;
  const int smem = decode_warps * 16 * D * static_cast<int>(sizeof(float));
  LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int split_tokens = options.split_tokens;
  if (split_tokens == 0) {
    // About 4 waves of blocks (the last wave's idle SMs then cost little), at least 256 tokens a
    // block (a few tiles a warp), rounded to 64.
    int per_sm = 0;
    LOWBIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, decode_warps * 32, smem));
    const long long blocks = 4LL * std::max(1, per_sm) * sm_count(), pairs = 1LL * batch * kv.kv_heads;
    const long long tokens = (1LL * max_length * pairs + blocks - 1) / blocks;
    split_tokens = static_cast<int>(std::max(256LL, (tokens + 63) / 64 * 64));
  }
  const int splits = std::max(1, (max_length + split_tokens - 1) / split_tokens);
  LOWBIT_CHECK(splits <= 65535, "cuda::decode: " << splits << " splits (raise split_tokens)");
  float* work = nullptr;
  if (splits > 1) work = workspace.reserve(static_cast<std::size_t>(batch) * kv.kv_heads * group * splits * (D + 2));
  kernel<<<dim3(splits, kv.kv_heads, batch), decode_warps * 32, smem, stream>>>(
      q, kv, group, q_scale, split_tokens, splits, options.prefetch_tiles, work, out);
  LOWBIT_CUDA_CHECK(cudaGetLastError());
  if (splits > 1) {
    decode_merge_kernel<D><<<batch * kv.kv_heads * group, D, 0, stream>>>(work, splits, out);
    LOWBIT_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace detail

/// out[b][j] = softmax(q[b][j] · K[b][h]ᵀ · scale) · V[b][h] for every sequence b of the cache (its
/// length at upload; a sequence with no tokens gives zeros) and query head j, h = j / (q_heads /
/// kv_heads), on `stream` (asynchronous). q and out: device fp16 [batch][q_heads][head_dim].
/// Preconditions, checked: q_heads a multiple of kv_heads with at most 16 query heads per KV head;
/// q, out non-null; split_tokens a multiple of 64 (or 0). out must not overlap q. The cache must live
/// on the current device; the workspace is used by one call at a time.
template <class Scheme>
void decode(const __half* q, const kv_view<Scheme>& cache, __half* out, std::size_t q_heads, decode_workspace& workspace,
            cudaStream_t stream = nullptr, const decode_options& options = {}) {
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
  LOWBIT_CHECK(options.prefetch_tiles >= 0, "cuda::decode: prefetch_tiles=" << options.prefetch_tiles);
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
    if (group <= 8) run(detail::decode_launch<Scheme, 64, 8>);
    else run(detail::decode_launch<Scheme, 64, 16>);
  } else {
    LOWBIT_CHECK(d == 128, "cuda::decode: head_dim=" << d << " (64 or 128)");
    if (group <= 8) run(detail::decode_launch<Scheme, 128, 8>);
    else run(detail::decode_launch<Scheme, 128, 16>);
  }
}

}  // namespace cuda
}  // namespace lowbit
