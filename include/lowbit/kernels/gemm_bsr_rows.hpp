/// \file
/// \brief The BSR kernels for block shapes the panel kernels do not take (BR not a multiple of 16,
/// or groups that are not whole lanes: 1 x 16, 4 x 4, 8 x 8 ...): one block row at a time.
///
/// The block row's blocks are dequantized once per call into an fp32 scratch, bit-identical to the
/// reference (simd::dequantize_rows; groups smaller than a batch, as 4 x 4 blocks with groups of 4,
/// through dequantize_small_groups: per-lane scales spread by a permute). Then, for M of a batch or
/// more (BR <= 4): tokens in the lanes, x transposed once per call, each decoded weight broadcast
/// into up to 4 batches of tokens (block_tokens). Smaller M, per token: where a block is 1, 2 or 4
/// whole batches of whole block rows (4 x 4, 4 x 8, 1 x 16 on AVX-512), each block's batches times
/// x's BC values repeated, accumulated straight from the scratch (block_direct); else one SIMD dot
/// product per output over the block row's rows laid side by side, x read in place where BC is a
/// multiple of the vector width, else gathered once per token and block row.
/// compute::int8 (W8A8 / W4A8) runs the same kernels on x's int8 codes as floats (gemm_bsr.hpp).
/// The scratch is a block row's (at most BR x K floats), never the whole matrix.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../arch/dispatch.hpp"
#include "../core/aligned.hpp"
#include "../quant/activations.hpp"
#include "../sparse/bsr_matrix.hpp"
#include "integer_weights.hpp"
#include "simd/dequantize.hpp"
#include "simd/ops.hpp"

namespace lowbit {
namespace detail {

/// Where the kernels write: y (row stride ld), block row b's outputs at y + b * BR, bias per output.
struct bsr_rows_output {
  float* y;
  std::size_t ld;
  const float* bias;
};

#if defined(LOWBIT_COMPILED_SSE42)
/// The sum of a batch's lanes (xsimd 8 calls it hadd, later ones reduce_add: written out).
template <class Tag>
float sum_lanes(const typename simd::ops<Tag>::f32& v) noexcept {
  constexpr std::size_t W = simd::ops<Tag>::lanes;
  alignas(64) float lanes[W];
  v.store_aligned(lanes);
  float s = 0.0f;
  for (std::size_t l = 0; l < W; ++l) s += lanes[l];
  return s;
}
#endif

/// sum a[i] * b[i] over i < n, any n (the tail in scalar).
template <class Tag>
float dot_any(const float* a, const float* b, std::size_t n) noexcept {
  float s = 0.0f;
  std::size_t i = 0;
#if defined(LOWBIT_COMPILED_SSE42)
  if constexpr (!std::is_same<Tag, arch::scalar_tag>::value) {
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    f32 acc0(0.0f), acc1(0.0f);
    for (; i + 2 * W <= n; i += 2 * W) {
      acc0 = xsimd::fma(f32::load_unaligned(a + i), f32::load_unaligned(b + i), acc0);
      acc1 = xsimd::fma(f32::load_unaligned(a + i + W), f32::load_unaligned(b + i + W), acc1);
    }
    for (; i + W <= n; i += W) acc0 = xsimd::fma(f32::load_unaligned(a + i), f32::load_unaligned(b + i), acc0);
    s = sum_lanes<Tag>(acc0 + acc1);
  }
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

/// sum over blocks i of w[i * bc ..] · x[cols[i] * bc ..], bc a multiple of the batch width (x read in place).
template <class Tag>
float dot_blocks(const float* w, const float* x, const uint32_t* cols, std::size_t count, std::size_t bc) noexcept {
  float s = 0.0f;
#if defined(LOWBIT_COMPILED_SSE42)
  if constexpr (!std::is_same<Tag, arch::scalar_tag>::value) {
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    f32 acc0(0.0f), acc1(0.0f);
    for (std::size_t i = 0; i < count; ++i) {
      const float* xi = x + cols[i] * bc;
      const float* wi = w + i * bc;
      std::size_t k = 0;
      for (; k + 2 * W <= bc; k += 2 * W) {
        acc0 = xsimd::fma(f32::load_unaligned(wi + k), f32::load_unaligned(xi + k), acc0);
        acc1 = xsimd::fma(f32::load_unaligned(wi + k + W), f32::load_unaligned(xi + k + W), acc1);
      }
      if (k < bc) acc0 = xsimd::fma(f32::load_unaligned(wi + k), f32::load_unaligned(xi + k), acc0);
    }
    s = sum_lanes<Tag>(acc0 + acc1);
    return s;
  }
#endif
  for (std::size_t i = 0; i < count; ++i) s += dot_any<Tag>(w + i * bc, x + cols[i] * bc, bc);
  return s;
}

/// n floats from src to dst; the common block widths as fixed-size copies (inlined, no call).
inline void copy_floats(float* dst, const float* src, std::size_t n) noexcept {
  switch (n) {
    case 4: std::memcpy(dst, src, 4 * sizeof(float)); break;
    case 8: std::memcpy(dst, src, 8 * sizeof(float)); break;
    case 16: std::memcpy(dst, src, 16 * sizeof(float)); break;
    default: std::memcpy(dst, src, n * sizeof(float));
  }
}

/// Floats per batch on the path of Tag (1 on the scalar path).
template <class Tag>
constexpr std::size_t batch_lanes() noexcept {
#if defined(LOWBIT_COMPILED_SSE42)
  if constexpr (!std::is_same<Tag, arch::scalar_tag>::value) return simd::ops<Tag>::lanes;
#endif
  return 1;
}

/// Largest number of blocks in one block row of s.
inline std::size_t widest_block_row(const bsr_structure& s) noexcept {
  std::size_t widest = 0;
  for (std::size_t b = 0; b < s.block_row_count(); ++b) widest = std::max<std::size_t>(widest, s.row_ptr[b + 1] - s.row_ptr[b]);
  return widest;
}

/// Value rows [first, first + rows) of `values` decoded to out (row i at out + i * bc), in one
/// pass over a flat one-row view where the rows are whole bytes (the common case), else row by row.
template <class Tag, class Scheme>
void dequantize_value_rows(const quantized_view<Scheme>& values, std::size_t first, std::size_t rows, float* out) noexcept {
  const std::size_t bc = values.cols();
  if (values.row_bytes() * 8 == bc * Scheme::bits) {
    quantized_view<Scheme> flat = values;
    flat.codes = values.row_codes(first);
    flat.scales = values.row_scales(first);
    flat.zeros = values.row_zeros(first);
    flat.shape = quantized_shape{1, rows * bc, values.group_size()};
    dequantize_rows<Tag>(flat, 0, 1, out, rows * bc);
  } else {
    dequantize_rows<Tag>(values, first, first + rows, out, bc);
  }
}

#if defined(LOWBIT_COMPILED_SSE42)
/// Lane l of a batch gets v[l / G] (G a divisor of the lane count): idx from spread_index<Tag>(G).
template <class Tag>
LOWBIT_ALWAYS_INLINE typename simd::ops<Tag>::f32 spread_lanes(const float* v, const typename simd::ops<Tag>::i32& idx) noexcept {
#if defined(LOWBIT_COMPILED_AVX512)
  if constexpr (Tag::level >= isa::avx512) {
    return _mm512_permutexvar_ps(idx, _mm512_loadu_ps(v));
  } else
#endif
#if defined(LOWBIT_COMPILED_AVX2)
  if constexpr (Tag::level == isa::avx2) {
    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(v), idx);
  } else
#endif
  {
    return _mm_castsi128_ps(_mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v)), idx));
  }
}

/// The permutation of spread_lanes: lane indices l / G (AVX2, AVX-512) or their bytes (SSE4.2's pshufb).
template <class Tag>
typename simd::ops<Tag>::i32 spread_index(std::size_t g) noexcept {
  constexpr std::size_t W = simd::ops<Tag>::lanes;
  alignas(64) int32_t idx[W];
  for (std::size_t l = 0; l < W; ++l) {
    const int32_t q = static_cast<int32_t>(l / g);
    idx[l] = Tag::level == isa::sse42 ? q * 4 * 0x01010101 + 0x03020100 : q;
  }
  return simd::ops<Tag>::i32::load_aligned(idx);
}

/// Groups smaller than a batch (g < lanes, lanes % g == 0: 4 x 4 blocks with groups of 4) on a
/// flat view of whole-byte rows: the decoder's plain values, times a per-lane scale vector that a
/// permute spreads from the groups' scales (and minus the spread zero points): each element is
/// (decode(c) - decode(zero)) * scale as in the reference, with no batch straddling groups lane by
/// lane. group_values holds 2 * (elements / g + lanes) floats.
template <class Tag, class Scheme>
void dequantize_small_groups(const quantized_view<Scheme>& values, std::size_t first, std::size_t rows, float* out,
                             float* group_values) noexcept {
  using O = simd::ops<Tag>;
  using f32 = typename O::f32;
  using D = simd::decoder<Tag, typename Scheme::format>;
  constexpr std::size_t W = O::lanes, B = D::block;
  constexpr int bits = format_traits<typename Scheme::format>::bits;
  const std::size_t g = values.group_size(), n = rows * values.cols(), groups = n / g, bytes = n * bits / 8;
  const uint8_t* codes = values.row_codes(first);
  const auto* scales = values.row_scales(first);
  const uint8_t* zeros = values.row_zeros(first);
  float* scale = group_values;
  float* zero = group_values + groups + W;
  std::size_t j = 0;
#if defined(LOWBIT_COMPILED_AVX2)
  if constexpr (std::is_same<typename Scheme::scale_type, fp16>::value && Tag::level >= isa::avx2)  // F16C, 8 at a time
    for (; j + 8 <= groups; j += 8)
      _mm256_storeu_ps(scale + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + j))));
#endif
  for (; j < groups; ++j) scale[j] = simd::detail::scale_value<Tag>(scales[j]);
  std::fill(scale + groups, scale + groups + W, 0.0f);  // read by the last batch's permute, never used
  if constexpr (Scheme::has_zero) {
    for (std::size_t i = 0; i < groups; ++i) zero[i] = format_traits<typename Scheme::format>::decode(zeros[i]);
    std::fill(zero + groups, zero + groups + W, 0.0f);
  }
  const typename O::i32 idx = spread_index<Tag>(g);
  const D dec;
  const std::size_t batch_groups = W / g, block_groups = B / g;
  // Block k's batches (group of its first element k_group); Full: every batch inside [0, n).
  const auto block = [&](std::size_t k, std::size_t k_group, const typename D::unpacked& u, auto full) LOWBIT_ALWAYS_INLINE_LAMBDA {
    simd::detail::static_for<B / W>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
      const std::size_t p = k + J * W, group = k_group + J * batch_groups;
      if (!decltype(full)::value && p >= n) return;
      f32 v = dec.template decode<decltype(J)::value>(u);
      if constexpr (Scheme::has_zero) v = v - spread_lanes<Tag>(zero + group, idx);
      v = v * spread_lanes<Tag>(scale + group, idx);
      if (decltype(full)::value || p + W <= n) {
        v.store_unaligned(out + p);
      } else {
        alignas(64) float last[W];
        v.store_aligned(last);
        std::memcpy(out + p, last, (n - p) * sizeof(float));
      }
    });
  };
  // Full blocks whose reads stay inside the codes; the rest from a zero-padded copy.
  const std::size_t full_end = bytes >= D::read_bytes ? std::min(n / B, (bytes - D::read_bytes) * 8 / bits / B + 1) * B : 0;
  std::size_t k = 0, k_group = 0;
  for (; k < full_end; k += B, k_group += block_groups) {
    typename D::unpacked u;
    dec.unpack(codes + k * bits / 8, u);
    block(k, k_group, u, std::true_type{});
  }
  for (; k < n; k += B, k_group += block_groups) {
    alignas(64) uint8_t padded[D::read_bytes] = {};
    std::memcpy(padded, codes + k * bits / 8, std::min(D::read_bytes, bytes - k * bits / 8));
    typename D::unpacked u;
    dec.unpack(padded, u);
    block(k, k_group, u, std::false_type{});
  }
}

/// BC floats at x repeated over a batch (BC 4, 8 or the lane count, dividing the lanes).
template <class Tag, std::size_t BC>
LOWBIT_ALWAYS_INLINE typename simd::ops<Tag>::f32 repeat_block(const float* x) noexcept {
  using f32 = typename simd::ops<Tag>::f32;
#if defined(LOWBIT_COMPILED_AVX512)
  if constexpr (Tag::level >= isa::avx512 && BC == 4) {
    // The zero-masked forms: GCC 12's plain ones pass _mm512_undefined_*, which -Wmaybe-uninitialized flags.
    return _mm512_maskz_broadcast_f32x4(0xFFFF, _mm_loadu_ps(x));
  } else if constexpr (Tag::level >= isa::avx512 && BC == 8) {
    return _mm512_castpd_ps(_mm512_maskz_broadcast_f64x4(0xFF, _mm256_loadu_pd(reinterpret_cast<const double*>(x))));
  } else
#endif
#if defined(LOWBIT_COMPILED_AVX2)
  if constexpr (Tag::level == isa::avx2 && BC == 4) {
    return _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x));
  } else
#endif
  {
    static_assert(BC == simd::ops<Tag>::lanes, "BC 4 or 8 below the lane count, else the lane count");
    return f32::load_unaligned(x);
  }
}
#endif

/// Batches per block for the direct kernel (block_direct) on Tag's path, 0 where it does not
/// apply: a block of 1, 2 or 4 whole batches, BC 4, 8 or the lane count dividing the lanes (each
/// batch covers whole block rows, so every batch meets x's BC values repeated).
template <class Tag>
std::size_t direct_batches(std::size_t br, std::size_t bc) noexcept {
  const std::size_t W = batch_lanes<Tag>(), per_block = br * bc / W;
  if (W == 1 || (br * bc) % W != 0 || W % bc != 0 || (bc != 4 && bc != 8 && bc != W)) return 0;
  return per_block == 1 || per_block == 2 || per_block == 4 ? per_block : 0;
}

/// One token against one block row, straight from the decoded blocks ([block][row][BC]): P batches
/// a block, each times x's block columns repeated (repeat_block), into four accumulators (a block's
/// batches, or four blocks' single batches); lane l of batch q belongs to block row (q * lanes + l)
/// / BC. Writes the BR sums to sums.
template <class Tag, std::size_t P, std::size_t BC>
void block_direct(const float* decoded, const float* x, const uint32_t* cols, std::size_t count, std::size_t br,
                  float* sums) noexcept {
#if defined(LOWBIT_COMPILED_SSE42)
  if constexpr (!std::is_same<Tag, arch::scalar_tag>::value) {
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes, U = 4 / P;  // U blocks a step
    const auto xs = [&](std::size_t i) LOWBIT_ALWAYS_INLINE_LAMBDA { return repeat_block<Tag, BC>(x + cols[i] * BC); };
    const auto ws = [&](std::size_t j) LOWBIT_ALWAYS_INLINE_LAMBDA { return f32::load_unaligned(decoded + j * W); };
    f32 a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);  // batch j of a step: x of block i + j / P
    std::size_t i = 0;
    for (; i + U <= count; i += U) {
      const std::size_t j = i * P;
      const f32 x0 = xs(i), x1 = P == 1 ? xs(i + 1) : x0, x3 = P == 4 ? x0 : xs(i + (P == 1 ? 3 : 1)),
                x2 = P == 1 ? xs(i + 2) : P == 2 ? x3 : x0;
      a0 = xsimd::fma(ws(j), x0, a0);
      a1 = xsimd::fma(ws(j + 1), x1, a1);
      a2 = xsimd::fma(ws(j + 2), x2, a2);
      a3 = xsimd::fma(ws(j + 3), x3, a3);
    }
    for (; i < count; ++i) {  // fewer than U blocks left (P = 1 or 2)
      const f32 xi = xs(i);
      a0 = xsimd::fma(ws(i * P), xi, a0);
      if constexpr (P == 2) a1 = xsimd::fma(ws(i * P + 1), xi, a1);
    }
    alignas(64) float lanes[P * W];
    if constexpr (P == 1) {
      ((a0 + a1) + (a2 + a3)).store_aligned(lanes);
    } else if constexpr (P == 2) {
      (a0 + a2).store_aligned(lanes);
      (a1 + a3).store_aligned(lanes + W);
    } else {
      a0.store_aligned(lanes);
      a1.store_aligned(lanes + W);
      a2.store_aligned(lanes + 2 * W);
      a3.store_aligned(lanes + 3 * W);
    }
    for (std::size_t r = 0; r < br; ++r) {
      float s = 0.0f;
      for (std::size_t l = 0; l < BC; ++l) s += lanes[r * BC + l];
      sums[r] = s;
    }
    return;
  }
#endif
  (void)decoded, (void)x, (void)cols, (void)count;
  std::fill(sums, sums + br, 0.0f);  // not reached: direct_batches is 0 on the scalar path
}

/// block_direct with P and BC as constants (direct_batches' cases).
template <class Tag>
void block_direct_any(std::size_t p, std::size_t bc, const float* decoded, const float* x, const uint32_t* cols,
                      std::size_t count, std::size_t br, float* sums) noexcept {
  constexpr std::size_t W = batch_lanes<Tag>();
  const auto with_bc = [&](auto bc_constant) {
    constexpr std::size_t BC = decltype(bc_constant)::value;
    if constexpr (BC <= W && W % BC == 0) {
      if (p == 1) block_direct<Tag, 1, BC>(decoded, x, cols, count, br, sums);
      if (p == 2) block_direct<Tag, 2, BC>(decoded, x, cols, count, br, sums);
      if (p == 4) block_direct<Tag, 4, BC>(decoded, x, cols, count, br, sums);
    }
  };
  if (bc == 4) with_bc(std::integral_constant<std::size_t, 4>{});
  if (bc == 8) with_bc(std::integral_constant<std::size_t, 8>{});
  if (bc == 16) with_bc(std::integral_constant<std::size_t, 16>{});
}

/// Tokens in the lanes (M of at least a batch): x transposed to xt (column k's tokens at k * mp, mp
/// tokens rounded up to whole batches, zero-padded), BR x V batches of tokens accumulated per block
/// row, each decoded weight broadcast once into V FMAs: every product useful, x's reads contiguous
/// per block column. xt points at the chunk's first token; sums[r * V * lanes + t] gets row r, token t.
template <class Tag, std::size_t BR, std::size_t V>
void block_tokens(const float* decoded, const float* xt, std::size_t mp, const uint32_t* cols, std::size_t count,
                  std::size_t bc, float* sums) noexcept {
#if defined(LOWBIT_COMPILED_SSE42)
  if constexpr (!std::is_same<Tag, arch::scalar_tag>::value) {
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    constexpr std::size_t C = BR * V >= 8 ? 1 : 8 / (BR * V);  // column phases: at least 8 independent FMA chains
    f32 acc[C][BR][V];
    for (std::size_t h = 0; h < C; ++h)
      for (std::size_t r = 0; r < BR; ++r)
        for (std::size_t v = 0; v < V; ++v) acc[h][r][v] = f32(0.0f);
    const auto column = [&](const float* w, const float* xc, std::size_t c, std::size_t h) LOWBIT_ALWAYS_INLINE_LAMBDA {
      f32 xv[V];
      for (std::size_t v = 0; v < V; ++v) xv[v] = f32::load_unaligned(xc + c * mp + v * W);
      for (std::size_t r = 0; r < BR; ++r) {
        const f32 wv(w[r * bc + c]);
        for (std::size_t v = 0; v < V; ++v) acc[h][r][v] = xsimd::fma(wv, xv[v], acc[h][r][v]);
      }
    };
    for (std::size_t i = 0; i < count; ++i) {
      const float* w = decoded + i * BR * bc;
      const float* xc = xt + cols[i] * bc * mp;
      std::size_t c = 0;
      for (; c + C <= bc; c += C)
        for (std::size_t h = 0; h < C; ++h) column(w, xc, c + h, h);
      for (; c < bc; ++c) column(w, xc, c, 0);
    }
    for (std::size_t r = 0; r < BR; ++r)
      for (std::size_t v = 0; v < V; ++v) {
        f32 a = acc[0][r][v];
        for (std::size_t h = 1; h < C; ++h) a += acc[h][r][v];
        a.store_unaligned(sums + (r * V + v) * W);
      }
    return;
  }
#endif
  (void)decoded, (void)xt, (void)mp, (void)cols, (void)count, (void)bc, (void)sums;  // scalar path: not reached
}

/// One block row of BR rows for tokens [0, m) through block_tokens, in chunks of up to 4 batches
/// (2 where BR > 2 on 16-register paths); store(t, r, sum) writes each output.
template <class Tag, std::size_t BR, class Store>
void block_row_tokens(const float* decoded, const float* xt, std::size_t mp, const uint32_t* cols, std::size_t count,
                      std::size_t bc, std::size_t m, float* sums, Store&& store) {
  constexpr std::size_t W = batch_lanes<Tag>(), most = W == 16 || BR <= 2 ? 4 : 2;
  for (std::size_t t0 = 0; t0 < m;) {
    const std::size_t v = std::min(most, (m - t0 + W - 1) / W), chunk = v * W;
    if (v == 1) block_tokens<Tag, BR, 1>(decoded, xt + t0, mp, cols, count, bc, sums);
    if (v == 2) block_tokens<Tag, BR, 2>(decoded, xt + t0, mp, cols, count, bc, sums);
    if (v == 3) block_tokens<Tag, BR, (most > 2 ? 3 : 1)>(decoded, xt + t0, mp, cols, count, bc, sums);
    if (v == 4) block_tokens<Tag, BR, (most > 2 ? 4 : 1)>(decoded, xt + t0, mp, cols, count, bc, sums);
    for (std::size_t r = 0; r < BR; ++r)
      for (std::size_t t = t0; t < std::min(m, t0 + chunk); ++t) store(t, r, sums[r * chunk + (t - t0)]);
    t0 += chunk;
  }
}

/// Block rows [b_begin, b_end), with the arch path of Tag: y = (x · Wᵀ) * token_scales[t] + bias.
/// Weight-only: x the activations, no token scales. compute::int8: x the int8 codes as floats and
/// token_scales their row scales (gemm_bsr.hpp).
template <class Tag, class Scheme>
void gemm_bsr_rows(const bsr_structure& s, const quantized_view<Scheme>& values, matrix_view<const float> x,
                   const float* token_scales, std::size_t b_begin, std::size_t b_end, const bsr_rows_output& out) {
  constexpr std::size_t W = batch_lanes<Tag>();
  const std::size_t br = s.block_rows, bc = s.block_cols, widest = widest_block_row(s) * bc, g = values.group_size();
  const bool tokens = W > 1 && br <= 4 && x.rows >= W;  // tokens in the lanes (block_tokens)
  const std::size_t direct = tokens ? 0 : direct_batches<Tag>(br, bc), mp = tokens ? (x.rows + W - 1) / W * W : 0;
  const bool small_groups = W > 1 && g < W && W % g == 0 && values.row_bytes() * 8 == bc * Scheme::bits;
  const bool in_place = bc % W == 0;  // x read block by block where it is; else gathered once a token and block row
  const bool by_rows = !tokens && !direct;  // one dot product per output (the rows laid side by side)
  aligned_buffer<float> decoded(br * widest), w_rows(by_rows && br > 1 ? br * widest : 0),
      x_cols(by_rows && !in_place ? widest : 0), group_values(small_groups ? 2 * (br * widest / g + W) : 0),
      sums(tokens ? br * 4 * W : br), x_tokens(tokens ? x.cols * mp : 0);
  if (tokens) {  // column k's tokens at x_tokens + k * mp, zero-padded
    for (std::size_t k = 0; k < x.cols; ++k) {
      for (std::size_t t = 0; t < x.rows; ++t) x_tokens[k * mp + t] = x(t, k);
      for (std::size_t t = x.rows; t < mp; ++t) x_tokens[k * mp + t] = 0.0f;
    }
  }
  for (std::size_t b = b_begin; b < b_end; ++b) {
    const std::size_t first = s.row_ptr[b], count = s.row_ptr[b + 1] - first, len = count * bc;
    const uint32_t* cols = s.col_idx.data() + first;
    if (count) {  // [block][row][bc]
#if defined(LOWBIT_COMPILED_SSE42)
      if constexpr (!std::is_same<Tag, arch::scalar_tag>::value) {
        if (small_groups) {
          dequantize_small_groups<Tag>(values, first * br, count * br, decoded.data(), group_values.data());
        } else {
          dequantize_value_rows<Tag>(values, first * br, count * br, decoded.data());
        }
      } else
#endif
      {
        dequantize_value_rows<Tag>(values, first * br, count * br, decoded.data());
      }
    }
    const auto store = [&](std::size_t t, std::size_t r, float sum) {
      const std::size_t n = b * br + r;
      out.y[t * out.ld + n] = (token_scales ? sum * token_scales[t] : sum) + (out.bias ? out.bias[n] : 0.0f);
    };
    if (tokens) {
      if (br == 1) block_row_tokens<Tag, 1>(decoded.data(), x_tokens.data(), mp, cols, count, bc, x.rows, sums.data(), store);
      if (br == 2) block_row_tokens<Tag, 2>(decoded.data(), x_tokens.data(), mp, cols, count, bc, x.rows, sums.data(), store);
      if (br == 3) block_row_tokens<Tag, 3>(decoded.data(), x_tokens.data(), mp, cols, count, bc, x.rows, sums.data(), store);
      if (br == 4) block_row_tokens<Tag, 4>(decoded.data(), x_tokens.data(), mp, cols, count, bc, x.rows, sums.data(), store);
      continue;
    }
    if (direct) {
      for (std::size_t t = 0; t < x.rows; ++t) {
        const float* xt = &x(t, 0);
        block_direct_any<Tag>(direct, bc, decoded.data(), xt, cols, count, br, sums.data());
        for (std::size_t r = 0; r < br; ++r) store(t, r, sums[r]);
      }
      continue;
    }
    // Row r of the block row: its blocks side by side (the decoded rows as they are when BR = 1).
    const float* rows = decoded.data();
    if (br > 1) {
      for (std::size_t i = 0; i < count; ++i)
        for (std::size_t r = 0; r < br; ++r)
          copy_floats(w_rows.data() + r * len + i * bc, decoded.data() + (i * br + r) * bc, bc);
      rows = w_rows.data();
    }
    for (std::size_t t = 0; t < x.rows; ++t) {
      const float* xt = &x(t, 0);
      if (!in_place)
        for (std::size_t i = 0; i < count; ++i) copy_floats(x_cols.data() + i * bc, xt + cols[i] * bc, bc);
      for (std::size_t r = 0; r < br; ++r)
        store(t, r, in_place ? dot_blocks<Tag>(rows + r * len, xt, cols, count, bc) : dot_any<Tag>(rows + r * len, x_cols.data(), len));
    }
  }
}

}  // namespace detail
}  // namespace lowbit
