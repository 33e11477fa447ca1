/// \file
/// \brief The BSR kernels for block shapes the panel kernels do not take (BR not a multiple of 16,
/// or groups that are not whole lanes: 1 x 16, 4 x 4, 8 x 8 ...): one block row at a time.
///
/// Weight-only: the block row's blocks are dequantized once into a BR x (blocks x BC) fp32 scratch
/// (simd::dequantize_rows, bit-identical to the reference), and each output is one SIMD dot
/// product over the block row: x read in place where BC is a multiple of the vector width, else
/// its blocks' columns gathered once per token and block row into one vector. Integer (W8A8 / W4A8): the codes become (u8(code) - u8(zero)) once
/// per block row, stored group-transposed as x's gathered int8 codes are, so that the groups' exact
/// dot products run side by side in the lanes; then (sum of dot * scale * unit) * x_scale.
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

/// Weight-only, block rows [b_begin, b_end), with the arch path of Tag.
template <class Tag, class Scheme>
void gemm_bsr_rows(const bsr_structure& s, const quantized_view<Scheme>& values, matrix_view<const float> x, std::size_t b_begin,
                   std::size_t b_end, const bsr_rows_output& out) {
  const std::size_t br = s.block_rows, bc = s.block_cols, widest = widest_block_row(s) * bc;
  const bool in_place = bc % batch_lanes<Tag>() == 0;  // x read block by block where it is; else gathered once a token and block row
  aligned_buffer<float> decoded(br * widest), w_rows(br > 1 ? br * widest : 0), x_cols(in_place ? 0 : widest);
  for (std::size_t b = b_begin; b < b_end; ++b) {
    const std::size_t first = s.row_ptr[b], count = s.row_ptr[b + 1] - first, len = count * bc;
    const uint32_t* cols = s.col_idx.data() + first;
    if (count) dequantize_value_rows<Tag>(values, first * br, count * br, decoded.data());  // [block][row][bc]
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
      for (std::size_t r = 0; r < br; ++r) {
        const std::size_t n = b * br + r;
        const float sum = in_place ? dot_blocks<Tag>(rows + r * len, xt, cols, count, bc) : dot_any<Tag>(rows + r * len, x_cols.data(), len);
        out.y[t * out.ld + n] = sum + (out.bias ? out.bias[n] : 0.0f);
      }
    }
  }
}

/// sum over groups j of scales[j] * (sum over k < g of w[k * groups + j] * x[k * groups + j]): the
/// groups' dot products side by side in the lanes (the operands stored k-major), so no group needs
/// a horizontal sum. Each lane's dot product is exact when its partial sums are integers below 2^24.
template <class Tag>
float group_dots(const float* w, const float* x, const float* scales, std::size_t groups, std::size_t g) noexcept {
  float s = 0.0f;
  std::size_t j = 0;
#if defined(LOWBIT_COMPILED_SSE42)
  if constexpr (!std::is_same<Tag, arch::scalar_tag>::value) {
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    f32 total(0.0f);
    for (; j + W <= groups; j += W) {
      f32 dot(0.0f);
      for (std::size_t k = 0; k < g; ++k)
        dot = xsimd::fma(f32::load_unaligned(w + k * groups + j), f32::load_unaligned(x + k * groups + j), dot);
      total = xsimd::fma(dot, f32::load_unaligned(scales + j), total);
    }
    s = sum_lanes<Tag>(total);
  }
#endif
  for (; j < groups; ++j) {
    float dot = 0.0f;
    for (std::size_t k = 0; k < g; ++k) dot += w[k * groups + j] * x[k * groups + j];
    s += dot * scales[j];
  }
  return s;
}

/// Integer path (formats with has_integer_path), block rows [b_begin, b_end): x quantized in `a`.
/// (u8(code) - u8(zero)) and the int8 codes as floats, each group's dot product exact (every
/// partial sum an integer, |sum| <= 255 * 127 * g < 2^24 for g <= 512; larger groups in int64),
/// then (sum over groups of dot * scale * unit) * x_scale.
template <class Tag, class Scheme>
void gemm_bsr_rows_int8(const bsr_structure& s, const quantized_view<Scheme>& values, const int8_activations& a,
                        std::size_t b_begin, std::size_t b_end, const bsr_rows_output& out) {
  constexpr integer_code_map map = integer_codes<typename Scheme::format>::value;
  const std::size_t br = s.block_rows, bc = s.block_cols, g = values.group_size(), per_block = bc / g;
  const std::size_t widest = widest_block_row(s) * bc;
  // Row r of a block row: element k of group j at w_rows[r * len + k * groups + j] (k-major), as x_cols.
  aligned_buffer<float> w_rows(br * widest), w_scales(br * widest / g), x_cols(widest);
  for (std::size_t b = b_begin; b < b_end; ++b) {
    const std::size_t first = s.row_ptr[b], count = s.row_ptr[b + 1] - first, len = count * bc, groups = len / g;
    for (std::size_t i = 0; i < count; ++i)
      for (std::size_t r = 0; r < br; ++r) {
        const std::size_t source = (first + i) * br + r;
        for (std::size_t q = 0; q < per_block; ++q) {
          const std::size_t j = i * per_block + q;
          const int zero = Scheme::has_zero ? map.u8[values.row_zeros(source)[q]] : map.offset;
          w_scales[r * groups + j] = scale_traits<typename Scheme::scale_type>::to_float(values.row_scales(source)[q]) * map.unit;
          for (std::size_t k = 0; k < g; ++k)
            w_rows[r * len + k * groups + j] = static_cast<float>(map.u8[values.code(source, q * g + k)] - zero);  // -255 .. 255
        }
      }
    for (std::size_t t = 0; t < a.rows(); ++t) {
      for (std::size_t j = 0; j < groups; ++j) {
        const int8_t* q = a.row(t) + s.col_idx[first + j / per_block] * bc + j % per_block * g;
        for (std::size_t k = 0; k < g; ++k) x_cols[k * groups + j] = q[k];
      }
      for (std::size_t r = 0; r < br; ++r) {
        const float* w = w_rows.data() + r * len;
        float sum = 0.0f;
        if (g <= 512) {
          sum = group_dots<Tag>(w, x_cols.data(), w_scales.data() + r * groups, groups, g);
        } else {
          for (std::size_t j = 0; j < groups; ++j) {
            int64_t dot = 0;
            for (std::size_t k = 0; k < g; ++k)
              dot += static_cast<int64_t>(w[k * groups + j]) * static_cast<int64_t>(x_cols[k * groups + j]);
            sum += static_cast<float>(dot) * w_scales[r * groups + j];
          }
        }
        const std::size_t n = b * br + r;
        out.y[t * out.ld + n] = sum * a.scale(t) + (out.bias ? out.bias[n] : 0.0f);
      }
    }
  }
}

}  // namespace detail
}  // namespace lowbit
