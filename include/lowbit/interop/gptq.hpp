/// \file
/// \brief GPTQ checkpoints (AutoGPTQ / GPTQModel "gptq" format): int32-packed qweight, qzeros,
/// fp16 scales and g_idx, imported into a lowbit matrix with zero points.
///
/// qweight is [K / (32 / bits), N]: word (i, n) packs input rows i * p .. i * p + p - 1 of
/// output n, row i * p + j in bits j * bits. qzeros is [G, N / p], packed the same way along N.
/// scales is [G, N]. g_idx [K] gives each input row's group; with activation order ("desc_act")
/// groups are not runs of consecutive rows, so the import sorts the input rows by group and
/// returns that order: the caller permutes activations the same way (permute_inputs). Format v1
/// (AutoGPTQ) stores each zero point minus one: the value is scale * (q - (stored + 1)).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../layout/quantized_matrix.hpp"
#include "../quant/gptq.hpp"
#include "../scheme.hpp"
#include "safetensors.hpp"

namespace lowbit {
namespace interop {

using gptq_int4 = scheme<uint4, fp16, true>;
using gptq_int8 = scheme<uint8, fp16, true>;

enum class gptq_format { v1, v2 };  ///< v1 stores zero - 1 (AutoGPTQ, most checkpoints); v2 the zero

/// Borrowed checkpoint arrays, row-major as the checkpoint stores them.
struct gptq_tensors {
  const int32_t* qweight = nullptr;  ///< [K / pack, N]
  const int32_t* qzeros = nullptr;   ///< [K / group_size, N / pack]
  const fp16* scales = nullptr;      ///< [K / group_size, N]
  const int32_t* g_idx = nullptr;    ///< [K] or null (then row k is in group k / group_size)
  std::size_t in_features = 0;       ///< K
  std::size_t out_features = 0;      ///< N
  std::size_t group_size = 0;        ///< 0: one group per column (GPTQ's group_size -1)
  gptq_format format = gptq_format::v1;
};

/// The imported weights (N rows x K columns) and, when g_idx is not the plain k / group_size,
/// the input order: column j of `weights` is input row input_order[j] of the checkpoint (the
/// same type quantize_gptq returns; permute_inputs gathers activations into that order).
template <class Scheme>
using gptq_matrix = permuted_matrix<Scheme>;
using lowbit::permute_inputs;

/// Imports GPTQ arrays into gptq_int4 (bits 4) or gptq_int8 (bits 8). Every shape, g_idx entry
/// and zero point is checked; a v1 stored zero of all ones (whose +1 does not fit the code
/// width: AutoGPTQ's kernels would use 2^bits) is refused.
template <class Scheme = gptq_int4>
gptq_matrix<Scheme> import_gptq(const gptq_tensors& t) {
  constexpr int bits = Scheme::bits;
  static_assert(Scheme::has_zero && (bits == 4 || bits == 8), "GPTQ imports into gptq_int4 or gptq_int8");
  constexpr std::size_t pack = 32 / bits;
  constexpr uint32_t mask = (1u << bits) - 1;
  const std::size_t k = t.in_features, n = t.out_features, g = t.group_size == 0 ? k : t.group_size;
  LOWBIT_CHECK(k > 0 && n > 0, "gptq: empty shape " << n << " x " << k);
  LOWBIT_CHECK(k % pack == 0 && n % pack == 0, "gptq: in_features " << k << " and out_features " << n << " must be multiples of " << pack);
  LOWBIT_CHECK(k % g == 0, "gptq: group_size " << g << " does not divide in_features " << k);
  LOWBIT_CHECK(t.qweight && t.qzeros && t.scales, "gptq: qweight, qzeros and scales are required");
  const std::size_t groups = k / g;

  gptq_matrix<Scheme> out{quantized_matrix<Scheme>(n, k, g), {}};
  std::vector<uint32_t> group_of(k);
  for (std::size_t i = 0; i < k; ++i) {
    const int64_t gi = t.g_idx ? t.g_idx[i] : static_cast<int64_t>(i / g);
    LOWBIT_CHECK(gi >= 0 && static_cast<std::size_t>(gi) < groups, "gptq: g_idx[" << i << "] = " << gi << " is not a group in [0, " << groups << ")");
    group_of[i] = static_cast<uint32_t>(gi);
  }
  // Sorting input rows by group turns any g_idx into runs; each group must then hold exactly g rows.
  std::vector<uint32_t> order(k);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return group_of[a] < group_of[b]; });
  bool identity = true;
  for (std::size_t j = 0; j < k; ++j) {
    LOWBIT_CHECK(group_of[order[j]] == j / g, "gptq: g_idx gives group " << group_of[order[j]] << " a size other than group_size " << g);
    identity = identity && order[j] == j;
  }
  if (!identity) out.input_order = order;

  quantized_matrix<Scheme>& w = out.weights;
  for (std::size_t grp = 0; grp < groups; ++grp) {
    for (std::size_t col = 0; col < n; ++col) {
      const uint32_t word = static_cast<uint32_t>(t.qzeros[grp * (n / pack) + col / pack]);
      uint32_t zero = (word >> (bits * (col % pack))) & mask;
      if (t.format == gptq_format::v1) {
        LOWBIT_CHECK(zero < mask, "gptq v1: stored zero point " << zero << " (group " << grp << ", output " << col
                                                                 << ") + 1 does not fit in " << bits << " bits");
        zero += 1;
      }
      w.zero(col, grp) = static_cast<uint8_t>(zero);
      w.scale(col, grp) = t.scales[grp * n + col];
    }
  }
  if (identity) {
    // Word (i, col) holds inputs i * pack .. i * pack + pack - 1 of output col in bits * j:
    // exactly lowbit's 4 bytes of that row at i * 4, so words move whole.
    for (std::size_t i = 0; i < k / pack; ++i)
      for (std::size_t col = 0; col < n; ++col) {
        const uint32_t word = static_cast<uint32_t>(t.qweight[i * n + col]);
        uint8_t* dst = w.codes() + col * w.row_bytes() + i * 4;
        for (std::size_t b = 0; b < 4; ++b) dst[b] = static_cast<uint8_t>(word >> (8 * b));
      }
    w.view().validate_contents();
    return out;
  }
  for (std::size_t j = 0; j < k; ++j) {
    const std::size_t row = order[j];
    const int32_t* words = t.qweight + (row / pack) * n;
    const unsigned shift = static_cast<unsigned>(bits * (row % pack));
    for (std::size_t col = 0; col < n; ++col) w.set_code(col, j, static_cast<uint8_t>((static_cast<uint32_t>(words[col]) >> shift) & mask));
  }
  w.view().validate_contents();
  return out;
}

/// Reads `<prefix>.qweight`, `.qzeros`, `.scales` and, if present, `.g_idx` from a safetensors
/// file (I32, I32, F16, I32) and imports them; K and N come from qweight's shape.
template <class Scheme = gptq_int4>
gptq_matrix<Scheme> import_gptq(const safetensors_file& file, const std::string& prefix, std::size_t group_size,
                                gptq_format format = gptq_format::v1) {
  constexpr std::size_t pack = 32 / Scheme::bits;
  const st_tensor& qweight = file.at(prefix + ".qweight");
  const st_tensor& qzeros = file.at(prefix + ".qzeros");
  const st_tensor& scales = file.at(prefix + ".scales");
  LOWBIT_CHECK(qweight.shape.size() == 2, "gptq: " << qweight.name << " is not 2-D");
  const std::size_t k = checked_mul(qweight.shape[0], pack, "gptq in_features"), n = qweight.shape[1];
  const std::size_t groups = group_size == 0 ? 1 : (group_size <= k ? k / group_size : 0);
  LOWBIT_CHECK(qzeros.shape == (std::vector<std::size_t>{groups, n / pack}),
               "gptq: " << qzeros.name << " is not [" << groups << ", " << n / pack << "]");
  LOWBIT_CHECK(scales.shape == (std::vector<std::size_t>{groups, n}), "gptq: " << scales.name << " is not [" << groups << ", " << n << "]");
  // Copies: file data need not be aligned for int32 / fp16 reads.
  const std::vector<int32_t> qw = qweight.copy_to<int32_t>(), qz = qzeros.copy_to<int32_t>();
  const std::vector<fp16> sc = scales.copy_to<fp16>();
  std::vector<int32_t> gi;
  if (const st_tensor* g_idx = file.find(prefix + ".g_idx")) {
    LOWBIT_CHECK(g_idx->shape == std::vector<std::size_t>{k}, "gptq: " << g_idx->name << " is not [" << k << "]");
    gi = g_idx->copy_to<int32_t>();
  }
  gptq_tensors t;
  t.qweight = qw.data();
  t.qzeros = qz.data();
  t.scales = sc.data();
  t.g_idx = gi.empty() ? nullptr : gi.data();
  t.in_features = k;
  t.out_features = n;
  t.group_size = group_size;
  t.format = format;
  return import_gptq<Scheme>(t);
}

}  // namespace interop
}  // namespace lowbit
