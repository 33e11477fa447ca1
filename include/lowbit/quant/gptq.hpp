/// \file
/// \brief GPTQ (Frantar et al., arXiv 2210.17323): quantize a layer's weights column by column,
/// feeding each column's error back into the columns not yet quantized, weighted by the inverse
/// Hessian of the layer's output error on calibration activations.
///
/// H = 2 XᵀX / samples (K x K), dampened by `damp` times its mean diagonal; U = the upper
/// Cholesky factor of H⁻¹. For each column j (in blocks of block_size, with the updates to the
/// columns after the block applied lazily, once per block): q_j = quantize(w_j),
/// e_j = (w_j - q_j) / U_jj, w_k -= e_j U_jk for k > j. Group scales (and zero points) are chosen
/// by the scheme's RTN rule on the group's current weights when the loop reaches the group's first
/// column. With act_order the columns go in order of decreasing H_jj, and the groups are formed in
/// that order: the result stores its columns permuted and returns the order (input_order) that
/// activations must be permuted by (as GPTQ's g_idx does). Float64 throughout the solve.
///
/// Threads: given U, rows (output channels) are independent, so the sweep splits them over the
/// executor; H and U are computed once, their loops split over rows of the triangle too. Every
/// value is computed by the same operations in the same order whatever the split: the result is
/// bit-identical for any executor.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../layout/quantized_matrix.hpp"
#include "quantize.hpp"
#include "rtn.hpp"

namespace lowbit {

struct gptq_options {
  std::size_t group_size = 128;  ///< 0: one group per row, scales from the whole row before the loop
  double damp = 0.01;            ///< fraction of the mean diagonal of H added to the diagonal
  std::size_t block_size = 128;  ///< columns per lazy-update block
  bool act_order = false;        ///< quantize columns in order of decreasing H_jj
};

/// A quantized matrix whose columns are stored in input_order (empty: the natural order):
/// column j of `weights` multiplies activation input_order[j].
template <class Scheme>
struct permuted_matrix {
  quantized_matrix<Scheme> weights;
  std::vector<uint32_t> input_order;
};

/// x' = x with its K columns in `order` (x'[:, j] = x[:, order[j]]): what activations go through
/// before a GEMM with a permuted_matrix. An empty order copies x.
inline void permute_inputs(const float* x, std::size_t rows, std::size_t k, const std::vector<uint32_t>& order, float* out) {
  LOWBIT_CHECK(order.empty() || order.size() == k, "permute_inputs: order has " << order.size() << " entries for K=" << k);
  LOWBIT_CHECK((x != nullptr && out != nullptr) || rows * k == 0, "permute_inputs: null buffer");
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < k; ++j) out[r * k + j] = x[r * k + (order.empty() ? j : order[j])];
}

namespace detail {

/// f(i) for every i in [0, n) over the executor, i paired with n - 1 - i in one index so that
/// loops over a triangle (cost growing or shrinking with i) split evenly.
template <class Executor, class F>
void for_triangle_rows(Executor&& exec, std::size_t n, F&& f) {
  exec((n + 1) / 2, [&](std::size_t begin, std::size_t end) {
    for (std::size_t t = begin; t < end; ++t) {
      f(t);
      if (n - 1 - t != t) f(n - 1 - t);
    }
  });
}

}  // namespace detail

/// H = 2 XᵀX / samples for calibration activations x (samples x k, row-major), in float64.
template <class Executor = serial_executor>
std::vector<double> gptq_hessian(const float* x, std::size_t samples, std::size_t k, Executor&& exec = Executor{}) {
  LOWBIT_CHECK(x != nullptr && samples > 0 && k > 0, "gptq_hessian: no activations (" << samples << " x " << k << ")");
  for (std::size_t i = 0; i < samples * k; ++i)
    LOWBIT_CHECK(std::isfinite(x[i]), "gptq_hessian: activation (" << i / k << ", " << i % k << ") is not finite");
  std::vector<double> h(k * k, 0.0);
  detail::for_triangle_rows(exec, k, [&](std::size_t i) {  // row i of the lower triangle
    double* hi = h.data() + i * k;
    for (std::size_t s = 0; s < samples; ++s) {
      const float* row = x + s * k;
      const double xi = row[i];
      for (std::size_t j = 0; j <= i; ++j) hi[j] += xi * row[j];
    }
  });
  for (std::size_t i = 0; i < k; ++i)
    for (std::size_t j = 0; j <= i; ++j) h[j * k + i] = h[i * k + j] = h[i * k + j] * 2.0 / static_cast<double>(samples);
  return h;
}

namespace detail {

/// In place: a (n x n, symmetric positive definite) becomes its lower Cholesky factor L
/// (a = L Lᵀ; the upper triangle is zeroed). A pivot that is not positive is a lowbit::error.
/// Column by column; the rows below each pivot over the executor when there are enough of them.
template <class Executor>
void cholesky_lower(std::vector<double>& a, std::size_t n, Executor&& exec) {
  for (std::size_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (std::size_t p = 0; p < j; ++p) d -= a[j * n + p] * a[j * n + p];
    LOWBIT_CHECK(d > 0.0, "gptq: the dampened Hessian is not positive definite (pivot " << j << " = " << d << "); raise damp");
    const double l = std::sqrt(d);
    a[j * n + j] = l;
    const auto rows_below = [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = j + 1 + begin; i < j + 1 + end; ++i) {
        double v = a[i * n + j];
        for (std::size_t p = 0; p < j; ++p) v -= a[i * n + p] * a[j * n + p];
        a[i * n + j] = v / l;
      }
    };
    if ((n - j - 1) * j >= 4096) exec(n - j - 1, rows_below);  // enough work to share
    else rows_below(0, n - j - 1);
    for (std::size_t i = 0; i < j; ++i) a[i * n + j] = 0.0;
  }
}

/// U with H⁻¹ = Uᵀ U (U upper triangular), from H: L = chol(H), H⁻¹ = L⁻ᵀ L⁻¹, U = chol(H⁻¹)ᵀ.
template <class Executor = serial_executor>
std::vector<double> inverse_cholesky_upper(std::vector<double> h, std::size_t n, Executor&& exec = Executor{}) {
  cholesky_lower(h, n, exec);
  std::vector<double> inv(n * n, 0.0);  // L⁻¹, lower triangular, by forward substitution: columns are independent
  for_triangle_rows(exec, n, [&](std::size_t j) {
    inv[j * n + j] = 1.0 / h[j * n + j];
    for (std::size_t i = j + 1; i < n; ++i) {
      double v = 0.0;
      for (std::size_t p = j; p < i; ++p) v -= h[i * n + p] * inv[p * n + j];
      inv[i * n + j] = v / h[i * n + i];
    }
  });
  std::vector<double> hinv(n * n, 0.0);  // L⁻ᵀ L⁻¹: entry (i, j) = sum over p >= i >= j of inv[p][i] inv[p][j]
  for_triangle_rows(exec, n, [&](std::size_t i) {
    double* out = hinv.data() + i * n;
    for (std::size_t p = i; p < n; ++p) {
      const double a = inv[p * n + i];
      if (a == 0.0) continue;
      const double* lp = inv.data() + p * n;
      for (std::size_t j = 0; j <= i; ++j) out[j] += a * lp[j];
    }
  });
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < i; ++j) hinv[j * n + i] = hinv[i * n + j];
  cholesky_lower(hinv, n, exec);
  std::vector<double> upper(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j <= i; ++j) upper[j * n + i] = hinv[i * n + j];
  return upper;
}

/// The working state of a GPTQ-style solve: the weights in float64 (columns permuted by `order`
/// when act_order) and U, the upper Cholesky factor of the dampened H⁻¹ in the same order.
struct gptq_problem {
  std::size_t rows = 0, k = 0;
  std::vector<double> w;  ///< rows x k, updated as columns are quantized
  std::vector<double> u;  ///< k x k
  std::vector<uint32_t> order;
};

template <class Executor>
gptq_problem make_gptq_problem(const float* w, std::size_t rows, std::size_t cols, std::size_t ld, const float* x,
                               std::size_t samples, double damp, bool act_order, Executor&& exec) {
  LOWBIT_CHECK(damp >= 0.0, "gptq: damp=" << damp << " must be >= 0");
  gptq_problem p;
  p.rows = rows;
  p.k = cols;
  const std::size_t k = cols;
  std::vector<double> h = gptq_hessian(x, samples, k, exec);
  p.w.resize(rows * k);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < k; ++j) p.w[r * k + j] = w[r * ld + j];
  for (std::size_t j = 0; j < k; ++j)  // an input that is always zero: its weights do not matter
    if (h[j * k + j] == 0.0) {
      h[j * k + j] = 1.0;
      for (std::size_t r = 0; r < rows; ++r) p.w[r * k + j] = 0.0;
    }
  p.order.resize(k);
  std::iota(p.order.begin(), p.order.end(), 0u);
  if (act_order) {
    std::stable_sort(p.order.begin(), p.order.end(), [&](uint32_t a, uint32_t b) { return h[a * k + a] > h[b * k + b]; });
    std::vector<double> hp(k * k), wp(rows * k);
    for (std::size_t i = 0; i < k; ++i)
      for (std::size_t j = 0; j < k; ++j) hp[i * k + j] = h[p.order[i] * k + p.order[j]];
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < k; ++j) wp[r * k + j] = p.w[r * k + p.order[j]];
    h.swap(hp);
    p.w.swap(wp);
  }
  double mean_diagonal = 0.0;
  for (std::size_t j = 0; j < k; ++j) mean_diagonal += h[j * k + j];
  for (std::size_t j = 0; j < k; ++j) h[j * k + j] += damp * mean_diagonal / static_cast<double>(k);
  p.u = inverse_cholesky_upper(std::move(h), k, exec);
  return p;
}

/// The column sweep shared by GPTQ and SparseGPT. For each column j, quantize_column(j, r0, r1,
/// values) writes into values[r] (r0 <= r < r1) what w_rj becomes (quantized, or 0 if pruned; it
/// may read rows r0..r1 of p.w, whose columns from j on are current within the block); the error
/// (w - value) / U_jj is fed back into the block's later columns at once and into the columns
/// after the block lazily. Rows are independent given U: the executor runs the whole sweep on
/// disjoint row ranges, and quantize_column must touch only its rows.
template <class QuantizeColumn, class Executor>
void gptq_sweep(gptq_problem& p, std::size_t block_size, QuantizeColumn&& quantize_column, Executor&& exec) {
  LOWBIT_CHECK(block_size > 0, "gptq: block_size must be positive");
  const std::size_t rows = p.rows, k = p.k;
  exec(rows, [&](std::size_t r0, std::size_t r1) {
    std::vector<double> error((r1 - r0) * block_size), values(rows);
    for (std::size_t b0 = 0; b0 < k; b0 += block_size) {
      const std::size_t b1 = std::min(k, b0 + block_size);
      for (std::size_t j = b0; j < b1; ++j) {
        quantize_column(j, r0, r1, values.data());
        const double d = p.u[j * k + j];
        for (std::size_t r = r0; r < r1; ++r) {
          const double e = (p.w[r * k + j] - values[r]) / d;
          error[(r - r0) * block_size + (j - b0)] = e;
          for (std::size_t c = j + 1; c < b1; ++c) p.w[r * k + c] -= e * p.u[j * k + c];  // inside the block: now
        }
      }
      for (std::size_t r = r0; r < r1; ++r)  // after the block: once, lazily
        for (std::size_t j = b0; j < b1; ++j) {
          const double e = error[(r - r0) * block_size + (j - b0)];
          for (std::size_t c = b1; c < k; ++c) p.w[r * k + c] -= e * p.u[j * k + c];
        }
    }
  });
}

/// Group scales (and zero points) for rows r0..r1 of `block` (row r: `width` floats at
/// block + r * stride; a fixed stride, so threads at different groups never share memory) by
/// quantize<Scheme>'s rule, stored into group `group` of q; scale and zero receive the values the
/// codes are decoded with. The rule is per row, so any split of the rows gives the same scales.
template <class Scheme>
void choose_group_scales(const std::vector<float>& block, std::size_t stride, std::size_t r0, std::size_t r1, std::size_t width,
                         quantized_matrix<Scheme>& q, std::size_t group, std::vector<float>& scale, std::vector<float>& zero) {
  quant_options o;
  o.group_size = width;
  const quantized_matrix<Scheme> params = quantize<Scheme>(block.data() + r0 * stride, r1 - r0, width, stride, o);
  for (std::size_t r = r0; r < r1; ++r) {
    q.scale(r, group) = params.scale(r - r0, 0);
    scale[r] = scale_traits<typename Scheme::scale_type>::to_float(params.scale(r - r0, 0));
    if constexpr (Scheme::has_zero) {
      q.zero(r, group) = params.zero(r - r0, 0);
      zero[r] = format_traits<typename Scheme::format>::decode(params.zero(r - r0, 0));
    }
  }
}

/// The code of v under (scale, zero), as RTN rounds it, and the value it decodes to.
template <class Scheme>
uint8_t quantize_value(double v, float scale, float zero, double& dequantized) {
  using traits = format_traits<typename Scheme::format>;
  const uint8_t code = traits::encode(scale > 0.0f ? static_cast<float>(v / scale) + zero : zero);
  dequantized = (static_cast<double>(traits::decode(code)) - zero) * scale;
  return code;
}

}  // namespace detail

/// GPTQ on w (rows x cols, row stride ld) with calibration activations x (samples x cols).
/// Group scales follow quantize<Scheme>'s rule (RTN, or the MX rule for MX schemes). The
/// executor splits the work over threads; the result does not depend on it.
template <class Scheme, class Executor = serial_executor>
permuted_matrix<Scheme> quantize_gptq(const float* w, std::size_t rows, std::size_t cols, std::size_t ld, const float* x,
                                      std::size_t samples, const gptq_options& options = {}, Executor&& exec = Executor{}) {
  detail::check_float_matrix("quantize_gptq", w, rows, cols, ld);
  detail::gptq_problem p = detail::make_gptq_problem(w, rows, cols, ld, x, samples, options.damp, options.act_order, exec);
  const std::size_t k = cols, g = options.group_size ? std::min(options.group_size, k) : k;
  permuted_matrix<Scheme> out{quantized_matrix<Scheme>(rows, k, g), {}};
  quantized_matrix<Scheme>& q = out.weights;
  std::vector<float> block(rows * g), scale(rows), zero(rows, 0.0f);
  detail::gptq_sweep(p, options.block_size, [&](std::size_t j, std::size_t r0, std::size_t r1, double* values) {
    if (j % g == 0) {  // the group's scales, from its current weights
      const std::size_t width = std::min(g, k - j);
      for (std::size_t r = r0; r < r1; ++r)
        for (std::size_t c = 0; c < width; ++c) block[r * g + c] = static_cast<float>(p.w[r * k + j + c]);
      detail::choose_group_scales(block, g, r0, r1, width, q, j / g, scale, zero);
    }
    for (std::size_t r = r0; r < r1; ++r) q.set_code(r, j, detail::quantize_value<Scheme>(p.w[r * k + j], scale[r], zero[r], values[r]));
  }, exec);
  if (options.act_order) out.input_order = p.order;
  q.view().validate_contents();
  return out;
}

}  // namespace lowbit
