// Every element format against golden vectors from independent implementations (ml_dtypes, numpy;
// tests/data/gen/gen_formats.py): every code decodes to its value, and every probe input (all
// midpoints, their neighbours, specials, overflow, random floats) encodes to the same code in
// saturate and in cast mode.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "lowbit/core/half.hpp"
#include "lowbit/formats/all.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;

struct golden {
  std::vector<std::pair<unsigned, uint32_t>> decode;             // code, value bits
  std::vector<std::tuple<uint32_t, unsigned, unsigned>> encode;  // input bits, saturate, cast
};

golden read_golden(const std::string& name) {
  const std::string path = std::string(LOWBIT_TEST_DATA_DIR) + "/formats/" + name + ".txt";
  std::ifstream in(path);
  golden g;
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    return g;
  }
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string kind;
    s >> kind;
    if (kind == "D") {
      unsigned code;
      uint32_t bits;
      s >> code >> std::hex >> bits;
      g.decode.emplace_back(code, bits);
    } else if (kind == "E") {
      uint32_t x;
      unsigned saturate, cast;
      s >> std::hex >> x >> std::dec >> saturate >> cast;
      g.encode.emplace_back(x, saturate, cast);
    }
  }
  return g;
}

bool same_value(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || bit_cast<uint32_t>(a) == bit_cast<uint32_t>(b);
}

template <class F>
class Formats : public ::testing::Test {};
using golden_formats = ::testing::Types<fp8_e4m3, fp8_e5m2, fp6_e3m2, fp6_e2m3, fp4_e2m1, e8m0, int4, uint4, int8,
                                        uint8, mxint8, mxint4, nf4, iq4_nl>;
TYPED_TEST_SUITE(Formats, golden_formats);

TYPED_TEST(Formats, EveryCodeDecodesToItsGoldenValue) {
  using traits = format_traits<TypeParam>;
  const golden g = read_golden(traits::name);
  ASSERT_EQ(g.decode.size(), std::size_t(1) << traits::bits);
  for (const auto& [code, bits] : g.decode) {
    const float expected = bit_cast<float>(bits);
    EXPECT_TRUE(same_value(traits::decode(static_cast<uint8_t>(code)), expected))
        << traits::name << " code " << code << ": got " << traits::decode(static_cast<uint8_t>(code)) << ", want "
        << expected;
  }
}

TYPED_TEST(Formats, EveryProbeEncodesToItsGoldenCode) {
  using traits = format_traits<TypeParam>;
  const golden g = read_golden(traits::name);
  ASSERT_GT(g.encode.size(), 1000u);
  int failures = 0;
  for (const auto& [x_bits, saturate, cast] : g.encode) {
    const float x = bit_cast<float>(x_bits);
    const unsigned got_saturate = traits::encode(x, overflow::saturate);
    const unsigned got_cast = traits::encode(x, overflow::cast);
    if (got_saturate != saturate || got_cast != cast) {
      if (++failures <= 10)
        ADD_FAILURE() << traits::name << " encode(" << x << " = 0x" << std::hex << x_bits << std::dec
                      << "): saturate " << got_saturate << " want " << saturate << ", cast " << got_cast << " want "
                      << cast;
    }
  }
  EXPECT_EQ(failures, 0);
}

TYPED_TEST(Formats, EncodeOfDecodeIsIdentityOnEveryCanonicalCode) {
  using traits = format_traits<TypeParam>;
  for (unsigned c = 0; c < (1u << traits::bits); ++c) {
    const float v = traits::decode(static_cast<uint8_t>(c));
    if (std::isnan(v)) continue;
    const unsigned back = traits::encode(v, overflow::cast);
    // Codes that are never produced: MXINT's -2 (symmetric range).
    if (v < traits::min_value || v > traits::max_finite) continue;
    EXPECT_TRUE(same_value(traits::decode(static_cast<uint8_t>(back)), v)) << traits::name << " code " << c;
    if (v != 0.0f || std::signbit(v) == std::signbit(traits::decode(static_cast<uint8_t>(back)))) {
      EXPECT_EQ(back, c) << traits::name << " code " << c << " value " << v;
    }
  }
}

// SF4 has no independent implementation: its table is checked against the construction below.
TEST(Formats, Sf4EncodeIsNearestWithLowerTies) {
  using traits = format_traits<sf4>;
  for (int i = 0; i < 15; ++i) {
    const float mid = (traits::codebook[i] + traits::codebook[i + 1]) * 0.5f;
    EXPECT_EQ(traits::encode(mid), i);
    EXPECT_EQ(traits::encode(std::nextafter(mid, 2.0f)), i + 1);
    EXPECT_EQ(traits::encode(traits::codebook[i]), i);
  }
  EXPECT_EQ(traits::encode(-5.0f), 0);
  EXPECT_EQ(traits::encode(5.0f), 15);
  EXPECT_EQ(traits::encode(std::nanf("")), 7);  // NaN encodes as 0
}

TEST(Formats, SpecValuesAndTraits) {
  EXPECT_EQ(format_traits<fp8_e4m3>::encode(464.0f, overflow::cast), 0x7E);  // ties to even: 448
  EXPECT_EQ(format_traits<fp8_e4m3>::encode(465.0f, overflow::cast), 0x7F);  // NaN
  EXPECT_EQ(format_traits<fp8_e4m3>::encode(1e6f), 0x7E);                    // saturates to 448
  EXPECT_EQ(format_traits<fp8_e5m2>::encode(61440.0f, overflow::cast), 0x7C);  // inf
  EXPECT_EQ(format_traits<fp8_e5m2>::encode(61439.0f, overflow::cast), 0x7B);  // 57344
  EXPECT_EQ(format_traits<fp8_e4m3>::decode(0x01), std::ldexp(1.0f, -9));       // smallest subnormal
  EXPECT_EQ(format_traits<fp8_e5m2>::decode(0x01), std::ldexp(1.0f, -16));
  EXPECT_EQ(format_traits<fp4_e2m1>::decode(0x8), 0.0f);
  EXPECT_TRUE(std::signbit(format_traits<fp4_e2m1>::decode(0x8)));
  EXPECT_EQ(format_traits<e8m0>::decode(0), std::ldexp(1.0f, -127));
  EXPECT_EQ(sizeof_bits<fp4_e2m1>::value, 4);
  EXPECT_EQ(sizeof_bits<fp6_e3m2>::value, 6);
  EXPECT_EQ(sizeof_bits<fp8_e4m3>::value, 8);
  EXPECT_EQ(sizeof(nf4), 1u);
  static_assert(format_traits<nf4>::has_codebook && !format_traits<int4>::has_codebook, "traits");
  static_assert(format_traits<fp8_e5m2>::emax == 15 && format_traits<fp6_e2m3>::emax == 2, "emax");
  constexpr fp8_e4m3 one(1.0f);  // constexpr value types
  static_assert(one.storage == 0x38 && static_cast<float>(one) == 1.0f, "constexpr round trip");
  static_assert(fp8_e4m3::from_bits(0x7E).to_float() == 448.0f, "from_bits");
  EXPECT_EQ(std::numeric_limits<fp8_e4m3>::max().storage, 0x7E);
  EXPECT_EQ(static_cast<float>(std::numeric_limits<int4>::lowest()), -8.0f);
}

// fp16 / bf16 host types against numpy / ml_dtypes casts (binary records: input bits, output bits).
void check_half_golden(const char* name, uint16_t (*convert)(float), float (*back)(uint16_t)) {
  const std::string path = std::string(LOWBIT_TEST_DATA_DIR) + "/formats/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.size() % 6, 0u);
  ASSERT_GT(bytes.size() / 6, 10000u);
  int failures = 0;
  for (std::size_t i = 0; i < bytes.size(); i += 6) {
    uint32_t x_bits;
    uint16_t want;
    std::memcpy(&x_bits, &bytes[i], 4);
    std::memcpy(&want, &bytes[i + 4], 2);
    const float x = bit_cast<float>(x_bits);
    const uint16_t got = convert(x);
    const bool both_nan = std::isnan(x) && std::isnan(back(got)) && std::isnan(back(want));
    if (got != want && !both_nan && ++failures <= 10)
      ADD_FAILURE() << name << "(" << x << " = 0x" << std::hex << x_bits << "): got 0x" << got << " want 0x" << want;
    // Decoding is exact: the float of a half converts back to the same half.
    if (!std::isnan(back(want))) {
      ASSERT_EQ(convert(back(want)), want) << name;
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(HalfTypes, Fp16MatchesNumpy) {
  check_half_golden(
      "fp16", [](float x) { return fp16(x).bits; }, [](uint16_t b) { return fp16::from_bits(b).to_float(); });
}
TEST(HalfTypes, Bf16MatchesMlDtypes) {
  check_half_golden(
      "bf16", [](float x) { return bf16(x).bits; }, [](uint16_t b) { return bf16::from_bits(b).to_float(); });
}

}  // namespace
}  // namespace lowbit_test
