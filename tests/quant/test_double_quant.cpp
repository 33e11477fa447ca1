// Double quantization of scales: the dynamic map's construction facts and the reconstruction bound.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lowbit/quant/double_quant.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;

TEST(DynamicMap, HasTheConstructionsShape) {
  const auto& map = dynamic_map_signed();
  for (std::size_t i = 1; i < map.size(); ++i) ASSERT_LT(map[i - 1], map[i]) << i;  // sorted, distinct
  EXPECT_EQ(map[255], 1.0f);
  EXPECT_EQ(map[127], 0.0f);  // 127 negatives below zero
  EXPECT_FLOAT_EQ(map[0], -0.9929688f);  // -(1 - 0.9/128/2), the last midpoint at 10^0
  EXPECT_FLOAT_EQ(map[128], 0.55e-6f);   // the smallest positive: mean of 0.1 and 1, times 10^-6
  for (std::size_t i = 0; i < 127; ++i) EXPECT_EQ(map[i], -map[254 - i]) << i;  // symmetric but for 1.0
}

TEST(DoubleQuant, ReconstructsScalesWithinHalfAMapStep) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(0.01f, 0.2f);
  std::vector<float> scales(1000);
  for (auto& s : scales) s = dist(rng);
  const auto dq = double_quantize(scales.data(), scales.size());
  ASSERT_EQ(dq.block_absmax.size(), 4u);
  const auto& map = dynamic_map_signed();
  for (std::size_t i = 0; i < scales.size(); ++i) {
    const float absmax = dq.block_absmax[i / 256];
    float max_gap = 0;
    for (std::size_t j = 1; j < 256; ++j) max_gap = std::max(max_gap, map[j] - map[j - 1]);
    EXPECT_NEAR(dq.scale(i), scales[i], absmax * max_gap / 2 * 1.0001f + 1e-7f) << i;
  }
  EXPECT_LT(dq.storage_bytes() * 8.0 / (1000 * 64), 0.14);  // ~0.127 bits a weight at block 64
}

TEST(DoubleQuant, BadInputRaises) {
  std::vector<float> s = {1.0f, std::nanf("")};
  EXPECT_THROW(double_quantize(s.data(), 2), lowbit::error);
  EXPECT_THROW(double_quantize(nullptr, 2), lowbit::error);
  EXPECT_THROW(double_quantize(s.data(), 0), lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
