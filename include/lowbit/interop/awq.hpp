/// \file
/// \brief AWQ checkpoints (llm-awq / AutoAWQ "GEMM" format): int32 words packed along the output
/// dimension with AWQ's nibble interleave, imported into a lowbit int4 matrix with zero points.
///
/// qweight is [K, N / 8]: the word for outputs 8j .. 8j + 7 holds output 8j + order[i] in bits
/// 4i .. 4i + 3, order = {0, 2, 4, 6, 1, 3, 5, 7}. qzeros [K / g, N / 8] is packed the same way;
/// scales is [K / g, N] fp16; the value is (q - zero) * scale (zeros stored as they are).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../layout/quantized_matrix.hpp"
#include "../scheme.hpp"
#include "safetensors.hpp"

namespace lowbit {
namespace interop {

using awq_int4 = scheme<uint4, fp16, true>;

struct awq_tensors {
  const int32_t* qweight = nullptr;  ///< [K, N / 8]
  const int32_t* qzeros = nullptr;   ///< [K / group_size, N / 8]
  const fp16* scales = nullptr;      ///< [K / group_size, N]
  std::size_t in_features = 0;       ///< K
  std::size_t out_features = 0;      ///< N
  std::size_t group_size = 0;        ///< 0: one group per column
};

namespace detail {
/// Nibble position, within its word, of output column c % 8 (the inverse of AWQ's order).
inline unsigned awq_nibble_of(std::size_t c) noexcept {
  static constexpr unsigned position[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  return position[c % 8];
}
}  // namespace detail

/// Imports AWQ arrays as an N x K awq_int4 matrix; shapes and scales are checked.
inline quantized_matrix<awq_int4> import_awq(const awq_tensors& t) {
  const std::size_t k = t.in_features, n = t.out_features, g = t.group_size == 0 ? k : t.group_size;
  LOWBIT_CHECK(k > 0 && n > 0, "awq: empty shape " << n << " x " << k);
  LOWBIT_CHECK(n % 8 == 0, "awq: out_features " << n << " must be a multiple of 8");
  LOWBIT_CHECK(k % g == 0, "awq: group_size " << g << " does not divide in_features " << k);
  LOWBIT_CHECK(t.qweight && t.qzeros && t.scales, "awq: qweight, qzeros and scales are required");
  const std::size_t words = n / 8, groups = k / g;
  quantized_matrix<awq_int4> w(n, k, g);
  for (std::size_t grp = 0; grp < groups; ++grp)
    for (std::size_t col = 0; col < n; ++col) {
      const uint32_t word = static_cast<uint32_t>(t.qzeros[grp * words + col / 8]);
      w.zero(col, grp) = static_cast<uint8_t>((word >> (4 * detail::awq_nibble_of(col))) & 15u);
      w.scale(col, grp) = t.scales[grp * n + col];
    }
  // Two input rows at a time make one whole byte of each output's row.
  for (std::size_t row = 0; row < k; row += 2)
    for (std::size_t word = 0; word < words; ++word) {
      const uint32_t w0 = static_cast<uint32_t>(t.qweight[row * words + word]);
      const uint32_t w1 = row + 1 < k ? static_cast<uint32_t>(t.qweight[(row + 1) * words + word]) : 0u;
      for (std::size_t c = 0; c < 8; ++c) {
        const unsigned shift = 4 * detail::awq_nibble_of(c);
        w.codes()[(word * 8 + c) * w.row_bytes() + row / 2] = static_cast<uint8_t>(((w0 >> shift) & 15u) | (((w1 >> shift) & 15u) << 4));
      }
    }
  w.view().validate_contents();
  return w;
}

/// Reads `<prefix>.qweight`, `.qzeros` and `.scales` (I32, I32, F16) from a safetensors file.
inline quantized_matrix<awq_int4> import_awq(const safetensors_file& file, const std::string& prefix, std::size_t group_size) {
  const st_tensor& qweight = file.at(prefix + ".qweight");
  const st_tensor& qzeros = file.at(prefix + ".qzeros");
  const st_tensor& scales = file.at(prefix + ".scales");
  LOWBIT_CHECK(qweight.shape.size() == 2, "awq: " << qweight.name << " is not 2-D");
  const std::size_t k = qweight.shape[0], n = checked_mul(qweight.shape[1], 8, "awq out_features");
  const std::size_t groups = group_size == 0 ? 1 : (group_size <= k ? k / group_size : 0);
  LOWBIT_CHECK(qzeros.shape == (std::vector<std::size_t>{groups, n / 8}), "awq: " << qzeros.name << " is not [" << groups << ", " << n / 8 << "]");
  LOWBIT_CHECK(scales.shape == (std::vector<std::size_t>{groups, n}), "awq: " << scales.name << " is not [" << groups << ", " << n << "]");
  const std::vector<int32_t> qw = qweight.copy_to<int32_t>(), qz = qzeros.copy_to<int32_t>();
  const std::vector<fp16> sc = scales.copy_to<fp16>();
  awq_tensors t;
  t.qweight = qw.data();
  t.qzeros = qz.data();
  t.scales = sc.data();
  t.in_features = k;
  t.out_features = n;
  t.group_size = group_size;
  return import_awq(t);
}

}  // namespace interop
}  // namespace lowbit
