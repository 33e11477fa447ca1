// lowbit matrices saved in safetensors: read back as zero-copy views (every scale type, with and
// without zero points, odd column counts), identical bit for bit; copies when misaligned; a
// different scheme, a corrupt description or shape, and corrupt contents are refused.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lowbit/interop/quantized_safetensors.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;
using namespace lowbit::interop;
using int4_f16 = scheme<int4, fp16>;
using int4_bf16 = scheme<int4, bf16>;
using uint4_f16 = scheme<uint4, fp16>;
using uint4_bf16 = scheme<uint4, bf16>;
using uint4_bf16_zeros = scheme<uint4, bf16, true>;
using uint4_f16_zeros = scheme<uint4, fp16, true>;
using int8_f32 = scheme<int8, float>;

template <class Scheme>
quantized_matrix<Scheme> random_matrix(std::size_t rows, std::size_t cols, std::size_t group, uint32_t seed) {
  quantized_matrix<Scheme> m(rows, cols, group);
  std::mt19937 rng(seed);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t k = 0; k < cols; ++k) m.set_code(r, k, static_cast<uint8_t>(rng() % (1u << Scheme::bits)));
    for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
      m.scale(r, g) = scale_traits<typename Scheme::scale_type>::from_float(0.01f * static_cast<float>(1 + rng() % 50));
      if (Scheme::has_zero) m.zero(r, g) = static_cast<uint8_t>(rng() % (1u << Scheme::bits));
    }
  }
  return m;
}

template <class Scheme>
void expect_same(const quantized_view<Scheme>& a, const quantized_matrix<Scheme>& b) {
  ASSERT_EQ(a.rows(), b.rows());
  ASSERT_EQ(a.cols(), b.cols());
  ASSERT_EQ(a.group_size(), b.group_size());
  EXPECT_EQ(std::memcmp(a.codes, b.codes(), b.rows() * b.row_bytes()), 0);
  EXPECT_EQ(std::memcmp(a.scales, b.scales(), b.shape().group_count() * sizeof(typename Scheme::scale_type)), 0);
  if (Scheme::has_zero) {
    EXPECT_EQ(std::memcmp(a.zeros, b.zeros(), b.shape().group_count()), 0);
  }
}

TEST(QuantizedSafetensors, RoundTripsAsViews) {
  const auto a = random_matrix<int4_f16>(7, 33, 32, 1);          // odd cols: a tail group, half a byte
  const auto b = random_matrix<uint4_bf16_zeros>(5, 64, 16, 2);
  const auto c = random_matrix<mx::fp4>(3, 96, 32, 3);
  const auto d = random_matrix<int8_f32>(9, 17, 17, 4);
  safetensors_writer w;
  add_quantized(w, "a", a.view());  // added byte tensors first: the writer still aligns the scales
  add_quantized(w, "b", b.view());
  add_quantized(w, "c", c.view());
  add_quantized(w, "d", d.view());
  const std::string bytes = w.bytes();
  std::vector<uint64_t> storage(bytes.size() / 8 + 1);  // 8-byte aligned, as a mapped file is
  std::memcpy(storage.data(), bytes.data(), bytes.size());
  const safetensors_file f = safetensors_file::parse(reinterpret_cast<const uint8_t*>(storage.data()), bytes.size());
  const quantized_view<int4_f16> va = view_quantized<int4_f16>(f, "a");
  EXPECT_EQ(va.codes, f.at("a.codes").data);  // no copy
  expect_same(va, a);
  expect_same(view_quantized<uint4_bf16_zeros>(f, "b"), b);
  expect_same(view_quantized<mx::fp4>(f, "c"), c);
  expect_same(view_quantized<int8_f32>(f, "d"), d);
  expect_same(load_quantized<int4_f16>(f, "a").view(), a);

  EXPECT_THROW(view_quantized<int4_bf16>(f, "a"), lowbit::error);    // another scale type
  EXPECT_THROW(view_quantized<uint4_f16>(f, "a"), lowbit::error);   // another format
  EXPECT_THROW(view_quantized<uint4_bf16>(f, "b"), lowbit::error);   // zero points dropped
  EXPECT_THROW(view_quantized<int4_f16>(f, "missing"), lowbit::error);

  // Misaligned bytes: the view refuses, the copy works.
  std::vector<uint8_t> shifted(bytes.size() + 1);
  std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
  const safetensors_file g = safetensors_file::parse(shifted.data() + 1, bytes.size());
  EXPECT_THROW(view_quantized<int4_f16>(g, "a"), lowbit::error);
  expect_same(load_quantized<int4_f16>(g, "a").view(), a);
}

TEST(QuantizedSafetensors, RefusesCorruptFiles) {
  const auto a = random_matrix<uint4_f16_zeros>(4, 64, 32, 5);
  const auto parse_view = [](const safetensors_writer& w) {
    const std::string bytes = w.bytes();
    std::vector<uint64_t> storage(bytes.size() / 8 + 1);
    std::memcpy(storage.data(), bytes.data(), bytes.size());
    const safetensors_file f = safetensors_file::parse(reinterpret_cast<const uint8_t*>(storage.data()), bytes.size());
    (void)view_quantized<uint4_f16_zeros>(f, "a");
  };
  {
    safetensors_writer w;
    add_quantized(w, "a", a.view());
    EXPECT_NO_THROW(parse_view(w));
  }
  const auto with = [&](const std::string& description, std::size_t codes_cols, uint8_t zero, uint16_t scale_bits) {
    safetensors_writer w;
    std::vector<uint8_t> codes(4 * codes_cols, 0x11), zeros(8, zero);
    std::vector<fp16> scales(8, fp16::from_bits(scale_bits));
    w.add("a.codes", st_dtype::u8, {4, codes_cols}, codes.data(), codes.size());
    w.add("a.scales", {4, 2}, scales.data());
    w.add("a.zeros", st_dtype::u8, {4, 2}, zeros.data(), zeros.size());
    w.add_metadata("lowbit.a", description);
    return w;
  };
  EXPECT_NO_THROW(parse_view(with("uint4,f16,zeros,64,32", 32, 3, 0x3C00)));
  EXPECT_THROW(parse_view(with("uint4,f16,zeros,64,32", 31, 3, 0x3C00)), lowbit::error);   // codes shape
  EXPECT_THROW(parse_view(with("uint4,f16,zeros,64,16", 32, 3, 0x3C00)), lowbit::error);   // groups disagree
  EXPECT_THROW(parse_view(with("uint4,f16,zeros,64,99", 32, 3, 0x3C00)), lowbit::error);   // group > cols
  EXPECT_THROW(parse_view(with("uint4,f16,zeros,x,32", 32, 3, 0x3C00)), lowbit::error);    // not a number
  EXPECT_THROW(parse_view(with("garbage", 32, 3, 0x3C00)), lowbit::error);
  EXPECT_THROW(parse_view(with("uint4,f16,zeros,64,32", 32, 16, 0x3C00)), lowbit::error);  // zero point 16
  EXPECT_THROW(parse_view(with("uint4,f16,zeros,64,32", 32, 3, 0x7C00)), lowbit::error);   // scale inf
}

}  // namespace
}  // namespace lowbit_test
