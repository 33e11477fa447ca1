// bitsandbytes 4-bit weights against bitsandbytes itself (tests/data/gen/gen_bnb.py, run on a
// GPU): NF4 and FP4, with and without double quantization, fp32 and fp16 weights, read from the
// Hugging Face serialization; lowbit's dequantization equals bitsandbytes' dequantize_4bit bit
// for bit (fp16 outputs: after the same rounding to fp16); GEMV on every ISA path; lowbit's NF4
// table, bnb_fp4 table and double-quantization map equal bitsandbytes' maps; bad states refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lowbit/arch/dispatch.hpp"
#include "lowbit/interop/bnb.hpp"
#include "lowbit/kernels/gemm.hpp"
#include "lowbit/kernels/reference/dequantize.hpp"
#include "lowbit/layout/panel.hpp"
#include "lowbit/quant/double_quant.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;
using namespace lowbit::interop;

const safetensors_file& golden() {
  static const safetensors_file f = safetensors_file::open(std::string(LOWBIT_TEST_DATA_DIR) + "/interop/bnb.safetensors");
  return f;
}

uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}

template <class Scheme>
void check(const std::string& name, bool half) {
  const quantized_matrix<Scheme> w = import_bnb<Scheme>(golden(), name + ".weight");
  ASSERT_EQ(w.rows(), 16u);
  ASSERT_EQ(w.cols(), 256u);
  ASSERT_EQ(w.group_size(), 64u);
  const st_tensor& dequant = golden().at(name + ".dequant");
  std::vector<float> tool(16 * 256);
  if (half) {
    const std::vector<fp16> h = dequant.copy_to<fp16>();
    for (std::size_t i = 0; i < h.size(); ++i) tool[i] = h[i].to_float();
  } else {
    tool = dequant.copy_to<float>();
  }
  for (std::size_t r = 0; r < 16; ++r)
    for (std::size_t k = 0; k < 256; ++k) {
      float mine = reference::dequantize_element(w.view(), r, k);
      if (half) mine = fp16(mine).to_float();
      ASSERT_EQ(bits_of(mine), bits_of(tool[r * 256 + k])) << name << " (" << r << ", " << k << ")";
    }
  const std::vector<float> x = golden().at("x").copy_to<float>();
  const panel_matrix<Scheme> panels = pack_panels(w.view());
  for (isa path : supported_isas()) {
    std::vector<float> y(3 * 16);
    gemm(matrix_view<const float>(x.data(), 3, 256), panels, matrix_view<float>(y.data(), 3, 16), {}, serial_executor{}, path);
    for (std::size_t i = 0; i < 3; ++i)
      for (std::size_t n = 0; n < 16; ++n) {
        double ref = 0, magnitude = 0;
        for (std::size_t k = 0; k < 256; ++k) {
          const double term = double(x[i * 256 + k]) * reference::dequantize_element(w.view(), n, k);
          ref += term;
          magnitude += std::fabs(term);
        }
        EXPECT_NEAR(y[i * 16 + n], ref, 1e-5 * magnitude) << name << " " << isa_name(path);
      }
  }
}

TEST(Bnb, Nf4) { check<bnb_nf4>("nf4_f32", false); check<bnb_nf4>("nf4_f16", true); }
TEST(Bnb, Nf4DoubleQuantized) { check<bnb_nf4>("nf4_dq_f32", false); check<bnb_nf4>("nf4_dq_f16", true); }
TEST(Bnb, Fp4) { check<bnb_fp4_scheme>("fp4_f32", false); check<bnb_fp4_scheme>("fp4_f16", true); }
TEST(Bnb, Fp4DoubleQuantized) { check<bnb_fp4_scheme>("fp4_dq_f32", false); check<bnb_fp4_scheme>("fp4_dq_f16", true); }

TEST(Bnb, TablesAreBitsandbytesMaps) {
  const std::vector<float> nf4_map = golden().at("nf4_f32.weight.quant_map").copy_to<float>();
  const std::vector<float> fp4_map = golden().at("fp4_f32.weight.quant_map").copy_to<float>();
  for (uint8_t c = 0; c < 16; ++c) {
    EXPECT_EQ(bits_of(format_traits<nf4>::decode(c)), bits_of(nf4_map[c])) << int(c);
    // FP4 code 8: the map says +0, bitsandbytes' kernels decode -0 (the dequantization tests
    // above check lowbit gives the kernels' sign); every other value is bit for bit.
    if (c == 8) {
      EXPECT_EQ(format_traits<bnb_fp4>::decode(bnb_fp4_code(c)), fp4_map[c]);
    } else {
      EXPECT_EQ(bits_of(format_traits<bnb_fp4>::decode(bnb_fp4_code(c))), bits_of(fp4_map[c])) << int(c);
    }
  }
  // lowbit's double quantization uses bitsandbytes' signed dynamic map, value for value.
  const std::vector<float> dynamic = golden().at("nf4_dq_f32.weight.nested_quant_map").copy_to<float>();
  for (std::size_t i = 0; i < 256; ++i) EXPECT_EQ(bits_of(dynamic_map_signed()[i]), bits_of(dynamic[i])) << i;
  // The bnb_fp4 codebook is a sorted table: lowbit's encoder round-trips every value.
  for (uint8_t c = 0; c < 16; ++c)
    if (c != 8) {  // +0 encodes as -0 (at the tie between them, encode goes low)
      EXPECT_EQ(format_traits<bnb_fp4>::encode(format_traits<bnb_fp4>::decode(c)), c);
    }
}

TEST(Bnb, RefusesBadStates) {
  EXPECT_THROW(import_bnb<bnb_fp4_scheme>(golden(), "nf4_f32.weight"), lowbit::error);  // no fp4 state
  EXPECT_THROW(import_bnb<bnb_nf4>(golden(), "missing.weight"), lowbit::error);
  const st_tensor& packed = golden().at("nf4_f32.weight");
  std::vector<float> absmax = golden().at("nf4_f32.weight.absmax").copy_to<float>();
  bnb_4bit_tensors t;
  t.packed = packed.data;
  t.rows = 16;
  t.cols = 256;
  t.absmax = absmax.data();
  EXPECT_NO_THROW(import_bnb_4bit<bnb_nf4>(t));
  t.blocksize = 96;  // does not divide the rows
  EXPECT_THROW(import_bnb_4bit<bnb_nf4>(t), lowbit::error);
  t.blocksize = 64;
  absmax[3] = std::nanf("");
  EXPECT_THROW(import_bnb_4bit<bnb_nf4>(t), lowbit::error);
  t.absmax = nullptr;
  EXPECT_THROW(import_bnb_4bit<bnb_nf4>(t), lowbit::error);
  std::vector<uint8_t> codes(64, 0);
  t.absmax_codes = codes.data();  // double quantization without its map
  EXPECT_THROW(import_bnb_4bit<bnb_nf4>(t), lowbit::error);

  // A checkpoint whose state JSON, map or sizes are wrong.
  const auto rebuild = [](const std::string& state, const std::vector<float>& map, std::size_t packed_bytes) {
    safetensors_writer w;
    std::vector<uint8_t> bytes(packed_bytes, 0x12);
    std::vector<float> absmax(64, 1.0f);
    w.add("w", st_dtype::u8, {packed_bytes, 1}, bytes.data(), bytes.size());
    w.add("w.absmax", {64}, absmax.data());
    w.add("w.quant_map", {map.size()}, map.data());
    w.add("w.quant_state.bitsandbytes__nf4", st_dtype::u8, {state.size()}, state.data(), state.size());
    return w.bytes();
  };
  std::vector<float> map(16);
  for (uint8_t c = 0; c < 16; ++c) map[c] = format_traits<nf4>::decode(c);
  const std::string good_state = R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [16, 256]})";
  const auto parse_and_import = [](const std::string& bytes) {
    const safetensors_file f = safetensors_file::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    return import_bnb<bnb_nf4>(f, "w");
  };
  EXPECT_NO_THROW(parse_and_import(rebuild(good_state, map, 2048)));
  EXPECT_THROW(parse_and_import(rebuild(good_state, map, 2047)), lowbit::error);
  EXPECT_THROW(parse_and_import(rebuild(R"({"quant_type": "nf4", "blocksize": 64, "shape": [16]})", map, 2048)), lowbit::error);
  EXPECT_THROW(parse_and_import(rebuild(R"({"quant_type": "fp4", "blocksize": 64, "shape": [16, 256]})", map, 2048)), lowbit::error);
  EXPECT_THROW(parse_and_import(rebuild(R"({"quant_type": "nf4", "blocksize": 0, "shape": [16, 256]})", map, 2048)), lowbit::error);
  EXPECT_THROW(parse_and_import(rebuild("{not json", map, 2048)), lowbit::error);
  std::vector<float> other = map;
  other[3] = 0.0f;
  EXPECT_THROW(parse_and_import(rebuild(good_state, other, 2048)), lowbit::error);  // a custom map
  EXPECT_THROW(parse_and_import(rebuild(good_state, std::vector<float>(8, 0.0f), 2048)), lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
