// 2:4 with plain fp32 / bf16 kept values (sparse/sparse24_plain.hpp): construction and its
// checks, the reference layout round trip, PyTorch's fp16/bf16 layout without requantization,
// and the GEMM on every path (small and large M, K % 4 != 0, N % 16 != 0, threads) against the
// float64 product with the dense matrix the sparse one stands for.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/gemm_check.hpp"
#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/core/parallel.hpp"
#include "lowbit/interop/torch_sparse24.hpp"
#include "lowbit/kernels/gemm_sparse24.hpp"
#include "lowbit/kernels/reference/gemm.hpp"
#include "lowbit/prune/prune24.hpp"
#include "lowbit/sparse/sparse24_quantize.hpp"

namespace lowbit_test {
namespace {

template <class T>
class sparse24_plain_test : public ::testing::Test {};
using plain_types = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(sparse24_plain_test, plain_types);

TYPED_TEST(sparse24_plain_test, reference_layout_round_trips_bit_for_bit) {
  using T = TypeParam;
  for (std::size_t cols : {std::size_t(4), std::size_t(9), std::size_t(30), std::size_t(64), std::size_t(203)}) {
    const std::size_t rows = 21, groups = sparse24_positions::groups_of(cols), kept_cols = 2 * groups;
    const std::vector<float> values = random_matrix(rows, kept_cols, static_cast<uint32_t>(cols));
    std::vector<T> kept(rows * (kept_cols + 3));  // row stride kept_cols + 3
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < kept_cols; ++j) kept[r * (kept_cols + 3) + j] = T(values[r * kept_cols + j]);
    sparse24_positions p(rows, cols);
    std::mt19937 rng(static_cast<uint32_t>(cols));
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t g = 0; g < groups; ++g) {
        const unsigned a = rng() % 3, b = a + 1 + rng() % (3 - a);
        p.set(r, g, a, b);
      }
    if (groups % 2) {  // the unused high nibble of an odd row end is ignored, whatever it holds
      for (std::size_t r = 0; r < rows; ++r) p.nibbles[r * p.bytes_per_row() + p.bytes_per_row() - 1] |= 0xf0;
    }
    const sparse24_matrix<T> s(kept.data(), rows, kept_cols + 3, p.nibbles.data(), cols);
    EXPECT_EQ(s.rows(), rows);
    EXPECT_EQ(s.kept_cols(), kept_cols);
    const std::vector<T> back = s.kept_values();
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < kept_cols; ++j) {
        ASSERT_EQ(std::memcmp(&back[r * kept_cols + j], &kept[r * (kept_cols + 3) + j], sizeof(T)), 0) << r << " " << j;
      }
    const sparse24_positions positions = s.positions();
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t g = 0; g < groups; ++g) ASSERT_EQ(positions.get(r, g), p.get(r, g)) << r << " " << g;
    const std::vector<float> dense = sparse24_to_dense(s);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t g = 0; g < groups; ++g) {
        const unsigned nibble = p.get(r, g);
        for (unsigned i = 0; i < 4 && 4 * g + i < cols; ++i) {
          const float expected = i == (nibble & 3u)  ? static_cast<float>(kept[r * (kept_cols + 3) + 2 * g])
                                 : i == nibble >> 2 ? static_cast<float>(kept[r * (kept_cols + 3) + 2 * g + 1])
                                                    : 0.0f;
          ASSERT_EQ(dense[r * cols + 4 * g + i], expected);
        }
      }
    // bf16 stores half of fp32's value bytes; both add 1/8 byte of positions per column.
    EXPECT_GE(s.storage_bytes(), rows * (kept_cols * sizeof(T) + groups / 2));
  }
}

TYPED_TEST(sparse24_plain_test, bad_input_is_refused) {
  using T = TypeParam;
  const std::size_t rows = 5, cols = 16, kept_cols = 8;
  std::vector<T> kept(rows * kept_cols, T(1.0f));
  sparse24_positions p(rows, cols);
  EXPECT_NO_THROW(sparse24_matrix<T>(kept.data(), rows, kept_cols, p.nibbles.data(), cols));
  sparse24_positions bad = p;
  bad.set(3, 2, 2, 2);
  EXPECT_THROW(sparse24_matrix<T>(kept.data(), rows, kept_cols, bad.nibbles.data(), cols), lowbit::error);
  bad.set(3, 2, 3, 1);
  EXPECT_THROW(sparse24_matrix<T>(kept.data(), rows, kept_cols, bad.nibbles.data(), cols), lowbit::error);
  EXPECT_THROW(sparse24_matrix<T>(nullptr, rows, kept_cols, p.nibbles.data(), cols), lowbit::error);
  EXPECT_THROW(sparse24_matrix<T>(kept.data(), rows, kept_cols, nullptr, cols), lowbit::error);
  EXPECT_THROW(sparse24_matrix<T>(kept.data(), rows, kept_cols - 1, p.nibbles.data(), cols), lowbit::error);  // ld
  EXPECT_THROW(sparse24_matrix<T>(kept.data(), 0, kept_cols, p.nibbles.data(), cols), lowbit::error);
  for (float v : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<T> nonfinite = kept;
    nonfinite[17] = T(v);
    EXPECT_THROW(sparse24_matrix<T>(nonfinite.data(), rows, kept_cols, p.nibbles.data(), cols), lowbit::error);
  }
  const sparse24_matrix<T> s(kept.data(), rows, kept_cols, p.nibbles.data(), cols);
  std::vector<float> x(3 * cols, 1.0f), y(3 * rows);
  const matrix_view<const float> xv(x.data(), 3, cols);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 3, cols - 1), s, matrix_view<float>(y.data(), 3, rows)),
               lowbit::error);
  EXPECT_THROW(gemm(xv, s, matrix_view<float>(y.data(), 3, rows - 1)), lowbit::error);
  EXPECT_THROW(gemm(xv, s, matrix_view<float>(y.data(), 3, rows), {nullptr, compute::int8}), lowbit::error);
  EXPECT_THROW(gemm(xv, sparse24_matrix<T>(), matrix_view<float>(y.data(), 3, rows)), lowbit::error);
}

struct plain_case {
  std::size_t m, n, k;
};
// Small M (1, 2, 3, 4) and the tiled kernel (5, 17, 64, 100), K % 4 = 0..3, N past a panel; the
// last: several blocks of x rows, each through several K tiles (128 kept values a tile).
const plain_case plain_cases[] = {{1, 37, 101}, {2, 16, 64}, {3, 50, 266},  {4, 18, 1100},
                                  {5, 45, 603}, {17, 33, 96}, {64, 20, 259}, {100, 37, 530}};

TYPED_TEST(sparse24_plain_test, gemm_matches_the_dense_reference_on_every_path) {
  using T = TypeParam;
  uint32_t seed = 900;
  for (const plain_case& c : plain_cases) {
    const std::vector<float> w = random_matrix(c.n, c.k, ++seed);
    const std::vector<float> x = random_matrix(c.m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
    const std::vector<float> norms = activation_norms(matrix_view<const float>(x.data(), c.m, c.k));
    const sparse24_matrix<T> s = prune_and_quantize24<T>(w.data(), c.n, c.k, c.k, norms.data());
    expect_gemm_matches_dense_on_every_path(x, s, sparse24_to_dense(s), bias, c.m, c.n, c.k, "2:4 plain");
  }
}

TYPED_TEST(sparse24_plain_test, threads_give_the_serial_result) {
  using T = TypeParam;
  const std::size_t n = 300, k = 258;
  const std::vector<float> w = random_matrix(n, k, 7), x = random_matrix(9, k, 8);
  const sparse24_matrix<T> s = prune_and_quantize24<T>(w.data(), n, k, k);
  thread_pool pool(3);
  for (std::size_t m : {std::size_t(1), std::size_t(9)}) {
    std::vector<float> serial(m * n), threaded(m * n);
    gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(serial.data(), m, n));
    gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(threaded.data(), m, n), {}, pool);
    EXPECT_EQ(serial, threaded) << "m=" << m;
  }
}

// PyTorch's fp16 / bf16 compressed values import without requantization (fp16 -> fp32 and
// bf16 -> bf16 are exact) and export back bit for bit.
TEST(sparse24_plain, torch_values_import_exactly) {
  const std::size_t rows = 32, cols = 64;
  const std::vector<float> w = random_matrix(rows, cols, 3);
  const sparse24_positions p = prune24(w.data(), rows, cols, cols, nullptr);
  const std::vector<uint8_t> meta = torch_sparse24::export_metadata(p, 16);
  std::vector<bf16> values16(rows * cols / 2);
  std::vector<fp16> half(rows * cols / 2);
  for (std::size_t i = 0; i < values16.size(); ++i) {
    values16[i] = bf16(w[i] * 3.0f);
    half[i] = fp16(w[i] * 3.0f);
  }
  const sparse24_matrix<bf16> b = torch_sparse24::import_matrix<bf16>(values16.data(), meta.data(), rows, cols);
  const sparse24_matrix<float> f = torch_sparse24::import_matrix<float>(half.data(), meta.data(), rows, cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < cols / 2; ++j) {
      ASSERT_EQ(b.value(r, j).bits, values16[r * cols / 2 + j].bits);
      ASSERT_EQ(f.value(r, j), half[r * cols / 2 + j].to_float());
    }
  EXPECT_EQ(b.positions().nibbles, p.nibbles);
  const std::vector<bf16> out16 = torch_sparse24::export_values<bf16>(b);
  const std::vector<fp16> out_half = torch_sparse24::export_values<fp16>(f);
  for (std::size_t i = 0; i < values16.size(); ++i) {
    ASSERT_EQ(out16[i].bits, values16[i].bits);
    ASSERT_EQ(out_half[i].bits, half[i].bits);
  }
}

}  // namespace
}  // namespace lowbit_test
