/// \file
/// \brief Double quantization (QLoRA / bitsandbytes): the fp32 block scales themselves stored in 8 bits.
///
/// bitsandbytes' NF4 keeps one fp32 absmax per block of 64 weights (0.5 bits a weight). Double
/// quantization subtracts the mean of those scales, splits them into blocks of 256 and stores each
/// as an 8-bit code of bitsandbytes' signed "dynamic" map times the block's fp32 absmax:
/// scale = dynamic_map[code] * block_absmax + offset, computed in float in that order
/// (0.127 bits a weight at block 64).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../core/aligned.hpp"
#include "../core/error.hpp"
#include "../core/rounding.hpp"

namespace lowbit {

/// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for
/// i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times 10^(i-6), both signs, plus 0
/// and 1, sorted ascending. Computed in float32 as torch computes it: linspace as
/// start + j * step for the first half and end - (n-1-j) * step for the second, each one fused
/// multiply-add (torch's CPU kernel uses FMA; plain multiply-then-add differs from
/// bitsandbytes' map in 42 of 256 values, tests/interop/test_bnb.cpp checks all 256).
inline const std::array<float, 256>& dynamic_map_signed() {
  static const std::array<float, 256> map = [] {
    std::array<float, 256> values{};
    std::size_t n = 0;
    for (int i = 0; i < 7; ++i) {
      const int items = (1 << i) + 1;
      float boundaries[65] = {};
      const float start = 0.1f, end = 1.0f;
      const float step = (end - start) / static_cast<float>(items - 1);
      const int half = items / 2;
      for (int j = 0; j < items; ++j)
        boundaries[j] = j < half ? std::fma(static_cast<float>(j), step, start)
                                 : std::fma(-static_cast<float>(items - 1 - j), step, end);
      const float power = static_cast<float>(std::pow(10.0, i - 6));
      for (int j = 0; j + 1 < items; ++j) {
        const float mean = (boundaries[j] + boundaries[j + 1]) / 2.0f;
        values[n++] = power * mean;
        values[n++] = -(power * mean);
      }
    }
    values[n++] = 0.0f;
    values[n++] = 1.0f;
    std::sort(values.begin(), values.end());
    return values;
  }();
  return map;
}

/// Index of the map value nearest to x (ties to the lower index); map ascending.
inline uint8_t nearest_dynamic_code(float x) {
  const auto& map = dynamic_map_signed();
  const auto it = std::lower_bound(map.begin(), map.end(), x);
  if (it == map.begin()) return 0;
  if (it == map.end()) return 255;
  const std::size_t hi = static_cast<std::size_t>(it - map.begin());
  return static_cast<uint8_t>((x - map[hi - 1] <= map[hi] - x) ? hi - 1 : hi);
}

/// Scales stored in 8 bits: codes (one per scale), one fp32 absmax per block, one fp32 offset.
struct double_quantized_scales {
  aligned_buffer<uint8_t> codes;
  aligned_buffer<float> block_absmax;
  float offset = 0.0f;
  std::size_t block_size = 256;

  std::size_t size() const noexcept { return codes.size(); }
  std::size_t storage_bytes() const noexcept { return codes.size() + block_absmax.size() * sizeof(float) + sizeof(float); }

  /// The scale the kernels use: dynamic_map[code] * block_absmax + offset, in float.
  float scale(std::size_t i) const noexcept {
    return mul_then_add(dynamic_map_signed()[codes[i]], block_absmax[i / block_size], offset);  // as bitsandbytes
  }
};

/// Double-quantizes `count` positive fp32 scales with the given block size (bitsandbytes: 256).
inline double_quantized_scales double_quantize(const float* scales, std::size_t count, std::size_t block_size = 256) {
  LOWBIT_CHECK(scales != nullptr, "double_quantize: scales pointer is null");
  LOWBIT_CHECK(count > 0, "double_quantize: no scales");
  LOWBIT_CHECK(block_size > 0, "double_quantize: block_size must be positive");
  double sum = 0.0;
  for (std::size_t i = 0; i < count; ++i) {
    LOWBIT_CHECK(std::isfinite(scales[i]), "double_quantize: scale " << i << " = " << scales[i] << " is not finite");
    sum += scales[i];
  }
  double_quantized_scales out;
  out.block_size = block_size;
  out.offset = static_cast<float>(sum / static_cast<double>(count));
  out.codes = aligned_buffer<uint8_t>(count);
  out.block_absmax = aligned_buffer<float>((count + block_size - 1) / block_size);
  for (std::size_t b = 0; b < out.block_absmax.size(); ++b) {
    const std::size_t i0 = b * block_size, i1 = std::min(count, i0 + block_size);
    float absmax = 0.0f;
    for (std::size_t i = i0; i < i1; ++i) absmax = std::max(absmax, std::fabs(scales[i] - out.offset));
    out.block_absmax[b] = absmax;
    for (std::size_t i = i0; i < i1; ++i)
      out.codes[i] = nearest_dynamic_code(absmax > 0.0f ? (scales[i] - out.offset) / absmax : 0.0f);
  }
  return out;
}

}  // namespace lowbit
