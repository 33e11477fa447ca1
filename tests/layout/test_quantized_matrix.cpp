// The reference bit-stream packing, quantized_matrix validation, and the panel layout as an exact inverse.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <random>

#include "common/schemes.hpp"
#include "lowbit/layout/panel.hpp"
#include "lowbit/layout/quantized_matrix.hpp"

namespace lowbit_test {
namespace {

TEST(BitStream, EveryWidthRoundTripsAndLeavesNeighboursAlone) {
  std::mt19937 rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    const std::size_t n = 101;
    std::vector<uint8_t> codes(n), stream(packed_bytes(n, bits) + 1, 0xA5);
    const uint8_t guard = stream.back();
    for (std::size_t i = 0; i < n; ++i) {
      codes[i] = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
      set_packed_code(stream.data(), i, bits, codes[i]);
    }
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(get_packed_code(stream.data(), i, bits), codes[i]) << "bits=" << bits << " i=" << i;
    // Rewrite one code in the middle: its neighbours must keep their values.
    set_packed_code(stream.data(), 50, bits, static_cast<uint8_t>(~codes[50]));
    EXPECT_EQ(get_packed_code(stream.data(), 49, bits), codes[49]);
    EXPECT_EQ(get_packed_code(stream.data(), 51, bits), codes[51]);
    EXPECT_EQ(get_packed_code(stream.data(), 50, bits), static_cast<uint8_t>(~codes[50] & ((1u << bits) - 1)));
    if (packed_bytes(n, bits) * 8 == n * static_cast<std::size_t>(bits)) {
      EXPECT_EQ(stream.back(), guard);
    }
  }
}

TEST(BitStream, NibbleOrderIsLowNibbleFirst) {
  uint8_t stream[2] = {0, 0};
  set_packed_code(stream, 0, 4, 0x3);
  set_packed_code(stream, 1, 4, 0xC);
  set_packed_code(stream, 2, 4, 0x5);
  EXPECT_EQ(stream[0], 0xC3);
  EXPECT_EQ(stream[1], 0x05);
}

TEST(QuantizedMatrix, ShapeAndSizes) {
  quantized_matrix<scheme<int4, fp16>> q(3, 37, 16);
  EXPECT_EQ(q.groups_per_row(), 3u);  // 16 + 16 + a tail group of 5
  EXPECT_EQ(q.row_bytes(), 19u);
  EXPECT_EQ(q.storage_bytes(), 3u * 19 + 3 * 3 * 2);
  quantized_matrix<scheme<fp6_e3m2>> q6(2, 5, 0);
  EXPECT_EQ(q6.group_size(), 5u);  // 0 means per channel
  EXPECT_EQ(q6.row_bytes(), 4u);   // 30 bits
}

TEST(QuantizedMatrix, BadShapesRaise) {
  using s = scheme<int4>;
  EXPECT_THROW((quantized_matrix<s>(0, 8, 8)), lowbit::error);
  EXPECT_THROW((quantized_matrix<s>(8, 0, 8)), lowbit::error);
  EXPECT_THROW((quantized_matrix<s>(8, 8, 9)), lowbit::error);
  try {
    quantized_matrix<s>(4, 8, 16);
    FAIL() << "expected lowbit::error";
  } catch (const lowbit::error& e) {
    EXPECT_NE(std::string(e.what()).find("group_size=16"), std::string::npos) << e.what();
  }
}

TEST(QuantizedMatrix, ValidateContentsCatchesCorruptData) {
  quantized_matrix<scheme<uint4, float, true>> q(2, 8, 4);
  for (std::size_t i = 0; i < 4; ++i) q.scales()[i] = 1.0f;
  EXPECT_NO_THROW(q.view().validate_contents());
  q.zeros()[3] = 16;  // not a 4-bit code
  EXPECT_THROW(q.view().validate_contents(), lowbit::error);
  q.zeros()[3] = 15;
  q.scales()[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(q.view().validate_contents(), lowbit::error);
  quantized_view<scheme<uint4, float, true>> v = q.view();
  v.zeros = nullptr;
  EXPECT_THROW(v.validate(), lowbit::error);
  v = q.view();
  v.codes = nullptr;
  EXPECT_THROW(v.validate(), lowbit::error);
}

template <class S>
class PanelLayout : public ::testing::Test {};
TYPED_TEST_SUITE(PanelLayout, all_schemes);

TYPED_TEST(PanelLayout, PackThenUnpackIsIdentity) {
  using S = TypeParam;
  using scale_type = typename S::scale_type;
  std::mt19937 rng(11);
  const std::size_t shapes[][3] = {{1, 8, 8}, {16, 64, 32}, {17, 40, 8}, {33, 37, 37}, {5, 96, 32}, {40, 24, 0}};
  for (const auto& shape : shapes) {
    quantized_matrix<S> q(shape[0], shape[1], shape[2]);
    for (std::size_t r = 0; r < q.rows(); ++r) {
      for (std::size_t k = 0; k < q.cols(); ++k) q.set_code(r, k, static_cast<uint8_t>(rng()));
      for (std::size_t g = 0; g < q.groups_per_row(); ++g) {
        const uint32_t random_bits = rng();
        std::memcpy(static_cast<void*>(&q.scale(r, g)), &random_bits, sizeof(scale_type));
        if (S::has_zero) q.zero(r, g) = static_cast<uint8_t>(rng() & ((1u << S::bits) - 1));
      }
    }
    const panel_matrix<S> packed = pack_panels(q.view());
    const quantized_matrix<S> back = unpack_panels(packed);
    // Padding bits in the last byte of a row are not data: compare codes one by one.
    for (std::size_t r = 0; r < q.rows(); ++r)
      for (std::size_t k = 0; k < q.cols(); ++k) ASSERT_EQ(back.code(r, k), q.code(r, k)) << r << "," << k;
    ASSERT_EQ(std::memcmp(back.scales(), q.scales(), q.shape().group_count() * sizeof(scale_type)), 0);
    if (S::has_zero) {
      ASSERT_EQ(std::memcmp(back.zeros(), q.zeros(), q.shape().group_count()), 0);
    }
  }
}

TEST(PanelLayoutErrors, GroupMustFitLanes) {
  quantized_matrix<scheme<int4>> q(4, 40, 12);  // 12 is not a multiple of 8 codes a lane
  EXPECT_THROW(pack_panels(q.view()), lowbit::error);
  quantized_matrix<scheme<int8>> q8(4, 40, 12);  // 8-bit lanes hold 4: fine
  EXPECT_NO_THROW(pack_panels(q8.view()));
}

TEST(PanelLayoutErrors, LaneContentsMatchTheDocumentedOrder) {
  quantized_matrix<scheme<int4>> q(1, 8, 8);
  for (std::size_t k = 0; k < 8; ++k) q.set_code(0, k, static_cast<uint8_t>(k + 1));
  const auto packed = pack_panels(q.view());
  const uint8_t* lane = packed.chunk(0, 0);
  EXPECT_EQ(lane[0], 0x51);  // k=0 low, k=4 high
  EXPECT_EQ(lane[1], 0x62);
  EXPECT_EQ(lane[2], 0x73);
  EXPECT_EQ(lane[3], 0x84);
}

}  // namespace
}  // namespace lowbit_test
