// GPTQ and AWQ checkpoints (tests/data/gen/gen_interop.py: packed as AutoGPTQ and AutoAWQ pack,
// dequantized as they dequantize, in fp16): lowbit's imports give the same fp16 weights bit for
// bit, activation order is handled through input_order, GEMV on the imports matches float64 on
// the tools' weights on every ISA path, and bad g_idx, zero points and shapes are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/arch/dispatch.hpp"
#include "lowbit/interop/awq.hpp"
#include "lowbit/interop/gptq.hpp"
#include "lowbit/kernels/gemm.hpp"
#include "lowbit/kernels/reference/dequantize.hpp"
#include "lowbit/layout/panel.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;
using namespace lowbit::interop;

const std::string data_dir = std::string(LOWBIT_TEST_DATA_DIR) + "/interop/";

/// The import's values, rounded to fp16 as the tools' dequantization rounds them, equal the
/// tools' bit for bit; GEMV on it (after input_order) matches float64 on the tools' weights.
template <class Scheme>
void check_against_tool(const quantized_matrix<Scheme>& w, const std::vector<uint32_t>& order, const st_tensor& dequant,
                        const st_tensor& x_tensor, const std::string& what) {
  const std::vector<fp16> tool = dequant.copy_to<fp16>();  // [N, K] in the checkpoint's input order
  const std::size_t n = w.rows(), k = w.cols();
  ASSERT_EQ(tool.size(), n * k) << what;
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t input = order.empty() ? j : order[j];
      ASSERT_EQ(fp16(reference::dequantize_element(w.view(), r, j)).bits, tool[r * k + input].bits)
          << what << " output " << r << " input " << input;
    }
  const std::vector<float> x = x_tensor.copy_to<float>();
  const std::size_t m = x_tensor.shape[0];
  std::vector<float> xp(x.size()), y(m * n);
  permute_inputs(x.data(), m, k, order, xp.data());
  const panel_matrix<Scheme> panels = pack_panels(w.view());
  for (isa path : supported_isas()) {
    gemm(matrix_view<const float>(xp.data(), m, k), panels, matrix_view<float>(y.data(), m, n), {}, serial_executor{}, path);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t r = 0; r < n; ++r) {
        double ref = 0, magnitude = 0;
        for (std::size_t in = 0; in < k; ++in) {
          const double term = double(x[i * k + in]) * tool[r * k + in].to_float();
          ref += term;
          magnitude += std::fabs(term);
        }
        // The tool's fp16 rounding of each weight (2^-11 relative) dominates the tolerance.
        EXPECT_NEAR(y[i * n + r], ref, 1e-3 * magnitude) << what << " " << isa_name(path);
      }
  }
}

TEST(Gptq, ImportsAsAutoGptqDequantizes) {
  const safetensors_file f = safetensors_file::open(data_dir + "gptq.safetensors");
  const gptq_matrix<gptq_int4> plain = import_gptq<gptq_int4>(f, "plain", 64);
  EXPECT_TRUE(plain.input_order.empty());  // g_idx is k / 64
  EXPECT_EQ(plain.weights.rows(), 48u);
  EXPECT_EQ(plain.weights.cols(), 256u);
  check_against_tool(plain.weights, plain.input_order, f.at("plain.dequant"), f.at("x"), "plain");

  const gptq_matrix<gptq_int4> act = import_gptq<gptq_int4>(f, "act_order", 64);
  ASSERT_EQ(act.input_order.size(), 256u);
  check_against_tool(act.weights, act.input_order, f.at("act_order.dequant"), f.at("x"), "act_order");

  const gptq_matrix<gptq_int8> eight = import_gptq<gptq_int8>(f, "int8", 64);
  check_against_tool(eight.weights, eight.input_order, f.at("int8.dequant"), f.at("x"), "int8");

  EXPECT_THROW(import_gptq<gptq_int4>(f, "plain", 128), lowbit::error);  // qzeros / scales shapes disagree
  EXPECT_THROW(import_gptq<gptq_int4>(f, "missing", 64), lowbit::error);
  EXPECT_THROW(import_gptq<gptq_int8>(f, "plain", 64), lowbit::error);   // 4-bit words read as 8-bit
}

TEST(Gptq, RefusesBadGroupsAndZeros) {
  const std::size_t k = 16, n = 8, g = 8;
  std::vector<int32_t> qweight(k / 8 * n, 0x76543210), qzeros(k / g * n / 8, 0x77777777), g_idx(k);
  std::vector<fp16> scales(k / g * n, fp16(0.5f));
  for (std::size_t i = 0; i < k; ++i) g_idx[i] = static_cast<int32_t>(i / g);
  gptq_tensors t{qweight.data(), qzeros.data(), scales.data(), g_idx.data(), k, n, g, gptq_format::v1};
  const gptq_matrix<gptq_int4> ok = import_gptq<gptq_int4>(t);
  EXPECT_EQ(ok.weights.zero(0, 0), 8);                                   // v1: stored 7 + 1
  EXPECT_EQ(reference::dequantize_element(ok.weights.view(), 0, 3), (3.0f - 8.0f) * 0.5f);
  t.format = gptq_format::v2;
  EXPECT_EQ(import_gptq<gptq_int4>(t).weights.zero(0, 0), 7);
  t.format = gptq_format::v1;
  qzeros[0] = 0x7777777F;  // stored 15: AutoGPTQ would subtract 16
  EXPECT_THROW(import_gptq<gptq_int4>(t), lowbit::error);
  qzeros[0] = 0x77777777;
  g_idx[3] = 2;  // no such group
  EXPECT_THROW(import_gptq<gptq_int4>(t), lowbit::error);
  g_idx[3] = -1;
  EXPECT_THROW(import_gptq<gptq_int4>(t), lowbit::error);
  g_idx[3] = 1;  // group 1 now has 9 rows, group 0 has 7
  EXPECT_THROW(import_gptq<gptq_int4>(t), lowbit::error);
  g_idx[3] = 0;
  scales[2] = fp16::from_bits(0x7E00);  // NaN
  EXPECT_THROW(import_gptq<gptq_int4>(t), lowbit::error);
  scales[2] = fp16(0.5f);
  t.group_size = 5;
  EXPECT_THROW(import_gptq<gptq_int4>(t), lowbit::error);
  t.group_size = g;
  t.in_features = 12;
  EXPECT_THROW(import_gptq<gptq_int4>(t), lowbit::error);
  t.in_features = k;
  t.qzeros = nullptr;
  EXPECT_THROW(import_gptq<gptq_int4>(t), lowbit::error);
}

TEST(Awq, ImportsAsAutoAwqDequantizes) {
  const safetensors_file f = safetensors_file::open(data_dir + "awq.safetensors");
  const quantized_matrix<awq_int4> w = import_awq(f, "layer", 32);
  EXPECT_EQ(w.rows(), 64u);
  EXPECT_EQ(w.cols(), 128u);
  EXPECT_EQ(w.zero(0, 0), 0);  // zeros are stored as they are
  check_against_tool(w, {}, f.at("layer.dequant"), f.at("x"), "awq");
  EXPECT_THROW(import_awq(f, "layer", 64), lowbit::error);
  EXPECT_THROW(import_awq(f, "layer", 0), lowbit::error);
}

TEST(Awq, UnpacksTheInterleave) {
  // One word: outputs 0..7 hold codes 0..7; AWQ puts output order[i] in nibble i.
  const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  uint32_t word = 0;
  for (int i = 0; i < 8; ++i) word |= static_cast<uint32_t>(order[i]) << (4 * i);
  std::vector<int32_t> qweight(32, static_cast<int32_t>(word)), qzeros(1, 0);
  std::vector<fp16> scales(8, fp16(1.0f));
  const awq_tensors t{qweight.data(), qzeros.data(), scales.data(), 32, 8, 32};
  const quantized_matrix<awq_int4> w = import_awq(t);
  for (std::size_t col = 0; col < 8; ++col) EXPECT_EQ(w.code(col, 5), col);
  awq_tensors bad = t;
  bad.out_features = 12;
  EXPECT_THROW(import_awq(bad), lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
