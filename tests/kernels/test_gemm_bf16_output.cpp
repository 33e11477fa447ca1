// bf16 output (kernels/gemm_bf16_output.hpp): y is the fp32 GEMM's y rounded to nearest even, bit
// for bit, for dense, 2:4 and BSR weights, fp32 and bf16 activations, weight-only and
// compute::int8, every path, small and large M, threads; bad views are refused.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/core/parallel.hpp"
#include "lowbit/kernels/gemm_bf16_output.hpp"
#include "lowbit/kernels/gemm_bsr.hpp"
#include "lowbit/kernels/gemm_sparse24.hpp"
#include "lowbit/prune/prune24.hpp"
#include "lowbit/sparse/bsr_quantize.hpp"
#include "lowbit/sparse/sparse24_quantize.hpp"

namespace lowbit_test {
namespace {

// y16 against bf16(y32), element by element (bits: signed zeros and NaNs must agree too).
template <class Act, class Weights, class Executor>
void expect_rounded(const std::vector<Act>& x, const Weights& w, std::size_t m, std::size_t n, std::size_t k,
                    const float* bias, compute mode, isa path, Executor&& exec) {
  const matrix_view<const Act> xv(x.data(), m, k);
  std::vector<float> y32(m * n, -1.0f);
  std::vector<bf16> y16(m * n, bf16(-1.0f));
  gemm(xv, w, matrix_view<float>(y32.data(), m, n), gemm_options{bias, mode}, exec, path);
  gemm(xv, w, matrix_view<bf16>(y16.data(), m, n), gemm_options{bias, mode}, exec, path);
  for (std::size_t i = 0; i < y32.size(); ++i) {
    ASSERT_EQ(y16[i].bits, bf16(y32[i]).bits) << isa_name(path) << " m=" << m << " output " << i << ": " << y32[i];
  }
}

TEST(gemm_bf16_output, is_the_fp32_result_rounded_on_every_path) {
  using S = scheme<int4, fp16>;
  const std::size_t n = 45, k = 300;
  const std::vector<float> w = random_matrix(n, k, 1), bias = random_matrix(1, n, 2);
  const panel_matrix<S> dense = pack_panels(quantize<S>(w.data(), n, k, k, {32}).view());
  const sparse24_matrix<S> sparse = prune_and_quantize24<S>(w.data(), n, k, k, nullptr, {32});
  const sparse24_matrix<bf16> sparse16 = prune_and_quantize24<bf16>(w.data(), n, k, k);
  const std::vector<float> wb = random_matrix(64, 128, 3);
  const bsr_matrix<S> blocks = prune_and_quantize_blocks<S>(wb.data(), 64, 128, 128, 32, 32, 0.5, {32});
  thread_pool pool(2);
  for (std::size_t m : {std::size_t(1), std::size_t(3), std::size_t(17), std::size_t(64)}) {
    const std::vector<float> x = random_matrix(m, k, static_cast<uint32_t>(10 + m));
    std::vector<bf16> x16(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) x16[i] = bf16(x[i]);
    const std::vector<float> xb = random_matrix(m, 128, static_cast<uint32_t>(20 + m));
    for (isa path : supported_isas()) {
      expect_rounded(x, dense, m, n, k, bias.data(), compute::weight_only, path, serial_executor{});
      expect_rounded(x, dense, m, n, k, nullptr, compute::int8, path, pool);
      expect_rounded(x16, dense, m, n, k, bias.data(), compute::weight_only, path, pool);
      expect_rounded(x, sparse, m, n, k, bias.data(), compute::weight_only, path, serial_executor{});
      expect_rounded(x, sparse16, m, n, k, nullptr, compute::weight_only, path, pool);
      expect_rounded(xb, blocks, m, 64, 128, nullptr, compute::int8, path, serial_executor{});
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(gemm_bf16_output, bad_views_are_refused) {
  using S = scheme<int8>;
  const std::vector<float> w = random_matrix(20, 64, 1), x = random_matrix(2, 64, 2);
  const panel_matrix<S> packed = pack_panels(quantize<S>(w.data(), 20, 64, 64).view());
  std::vector<bf16> y(2 * 20);
  const matrix_view<const float> xv(x.data(), 2, 64);
  EXPECT_NO_THROW(gemm(xv, packed, matrix_view<bf16>(y.data(), 2, 20)));
  EXPECT_THROW(gemm(xv, packed, matrix_view<bf16>(nullptr, 2, 20)), lowbit::error);
  EXPECT_THROW(gemm(xv, packed, matrix_view<bf16>(y.data(), 2, 19)), lowbit::error);
  EXPECT_THROW(gemm(xv, packed, matrix_view<bf16>(y.data(), 1, 20)), lowbit::error);
  EXPECT_THROW(gemm(xv, packed, matrix_view<bf16>(y.data(), 2, 20, 10)), lowbit::error);  // ld < cols
}

}  // namespace
}  // namespace lowbit_test
