// N:M sparsity (sparse/nm_matrix.hpp, nm_quantize.hpp, kernels/gemm_nm.hpp): the mask's
// validation, the reference layout round trip for 4:8, 1:4, 2:8, 8:16 and 2:4, the prune-then-
// quantize call, and the weight-only GEMM on every ISA path against the float64 reference of the
// dense matrix the N:M one stands for, on odd shapes (K not a multiple of M, N odd, M = 1..64).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/gemm_check.hpp"
#include "common/schemes.hpp"
#include "lowbit/kernels/gemm_nm.hpp"
#include "lowbit/prune/prune_nm.hpp"
#include "lowbit/sparse/nm_quantize.hpp"

namespace lowbit_test {
namespace {

struct nm_case {
  std::size_t n, m;
};
const nm_case patterns[] = {{4, 8}, {1, 4}, {2, 8}, {8, 16}, {2, 4}, {1, 16}};

template <class Scheme>
quant_options kept_options(std::size_t requested) {
  if constexpr (is_plain_value<Scheme>::value) {
    return {};
  } else {
    return {is_mx_scheme<Scheme>::value ? mx::block_size : requested};
  }
}

TEST(nm_matrix, mask_and_shape_are_validated) {
  using S = scheme<int8>;
  const std::size_t rows = 3, cols = 16;  // 4:8: 2 groups, 8 kept values a row
  const std::vector<float> kept = random_matrix(rows, 8, 1);
  const quantized_matrix<S> q = quantize<S>(kept.data(), rows, 8, 8);
  nm_pattern p(rows, cols, 4, 8);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < cols; k += 2) p.set(r, k, true);
  EXPECT_NO_THROW(nm_matrix<S>(q.view(), p.bits.data(), cols, 4, 8));
  nm_pattern bad = p;
  bad.set(1, 1, true);  // 5 in group 0 of row 1
  EXPECT_THROW(nm_matrix<S>(q.view(), bad.bits.data(), cols, 4, 8), lowbit::error);
  bad = p;
  bad.set(2, 14, false);  // 3 in group 1 of row 2
  EXPECT_THROW(nm_matrix<S>(q.view(), bad.bits.data(), cols, 4, 8), lowbit::error);
  EXPECT_THROW(nm_matrix<S>(q.view(), nullptr, cols, 4, 8), lowbit::error);
  EXPECT_THROW(nm_matrix<S>(q.view(), p.bits.data(), 24, 4, 8), lowbit::error);  // 24 columns need 12 kept values
  EXPECT_THROW(nm_matrix<S>(q.view(), p.bits.data(), cols, 3, 8), lowbit::error);  // N not a power of two
  EXPECT_THROW(nm_matrix<S>(q.view(), p.bits.data(), cols, 4, 6), lowbit::error);  // M not 4, 8, 16
  EXPECT_THROW(nm_matrix<S>(q.view(), p.bits.data(), cols, 8, 8), lowbit::error);  // N = M
  EXPECT_THROW(nm_matrix<S>(q.view(), p.bits.data(), 0, 4, 8), lowbit::error);
  EXPECT_NO_THROW(nm_matrix<S>(q.view(), p.bits.data(), 13, 4, 8));  // 13 columns: 2 groups too, padding kept
  // The kept values' contents, as from a file: a non-finite scale, a zero point past the format's codes.
  quantized_matrix<S> nan_scale = quantize<S>(kept.data(), rows, 8, 8);
  nan_scale.scale(2, 0) = NAN;
  EXPECT_THROW(nm_matrix<S>(nan_scale.view(), p.bits.data(), cols, 4, 8), lowbit::error);
  using Z = scheme<uint4, float, true>;
  quantized_matrix<Z> bad_zero = quantize<Z>(kept.data(), rows, 8, 8);
  EXPECT_NO_THROW(nm_matrix<Z>(bad_zero.view(), p.bits.data(), cols, 4, 8));
  bad_zero.zero(1, 0) = 16;
  EXPECT_THROW(nm_matrix<Z>(bad_zero.view(), p.bits.data(), cols, 4, 8), lowbit::error);
  // Plain kinds: null values, a short leading dimension, a non-finite value.
  EXPECT_THROW(nm_matrix<float>(nullptr, rows, 8, p.bits.data(), cols, 4, 8), lowbit::error);
  EXPECT_THROW(nm_matrix<float>(kept.data(), rows, 7, p.bits.data(), cols, 4, 8), lowbit::error);
  std::vector<float> nan_kept = kept;
  nan_kept[5] = std::nanf("");
  EXPECT_THROW(nm_matrix<float>(nan_kept.data(), rows, 8, p.bits.data(), cols, 4, 8), lowbit::error);
  EXPECT_THROW(nm_matrix<float>(kept.data(), rows, 8, bad.bits.data(), cols, 4, 8), lowbit::error);
  // Conversions: a dense matrix with too many non-zeros, a pattern of another shape.
  const std::vector<float> dense = random_matrix(rows, cols, 2);
  EXPECT_THROW(find_nm_pattern(dense.data(), rows, cols, cols, 4, 8), lowbit::error);
  EXPECT_THROW(find_nm_pattern(dense.data(), rows, cols, cols, 4, 32), lowbit::error);
  const std::vector<float> taller = random_matrix(rows + 1, cols, 3);
  EXPECT_THROW(quantize_nm<S>(taller.data(), rows + 1, cols, cols, p), lowbit::error);
  EXPECT_THROW(quantize_nm<S>(dense.data(), rows, cols, cols, bad), lowbit::error);
  EXPECT_THROW(prune_and_quantize_nm<S>(dense.data(), rows, cols, cols, 3, 8), lowbit::error);
  EXPECT_THROW(nm_pattern_of(prune_nm_mask(dense.data(), rows, cols, cols, 3, 8)), lowbit::error);
  // GEMM: wrong shapes, an empty matrix, compute::int8.
  const nm_matrix<S> w(q.view(), p.bits.data(), cols, 4, 8);
  std::vector<float> x(2 * cols, 1.0f), y(2 * rows);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 2, cols - 1), w, matrix_view<float>(y.data(), 2, rows)), lowbit::error);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 2, cols), w, matrix_view<float>(y.data(), 2, rows - 1)), lowbit::error);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 2, cols), nm_matrix<S>(), matrix_view<float>(y.data(), 2, rows)),
               lowbit::error);
  EXPECT_THROW(gemm(matrix_view<const float>(nullptr, 2, cols), w, matrix_view<float>(y.data(), 2, rows)), lowbit::error);
  gemm_options int8_options;
  int8_options.mode = compute::int8;
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 2, cols), w, matrix_view<float>(y.data(), 2, rows), int8_options),
               lowbit::error);
}

template <class Scheme>
class nm_test : public ::testing::Test {};
using nm_schemes = ::testing::Types<scheme<int4>, scheme<uint4, float, true>, scheme<int8>, scheme<nf4, bf16>,
                                    scheme<fp8_e4m3>, scheme<fp6_e3m2>, mx::fp4, float, bf16>;
TYPED_TEST_SUITE(nm_test, nm_schemes);

// dense -> nm -> dense: the pattern comes back bit for bit, the kept values are those of the
// pruned matrix (quantized as quantize<Scheme> of the gathered values), and the dense matrix is
// that pattern's.
TYPED_TEST(nm_test, reference_layout_round_trips) {
  using S = TypeParam;
  for (const nm_case& c : patterns) {
    const std::size_t rows = 19, cols = 40 * c.m + (c.m > 4 ? 5 : 3);  // a partial last group
    const std::vector<float> w = random_matrix(rows, cols, static_cast<uint32_t>(c.m * 10 + c.n));
    const nm_pattern pattern = nm_pattern_of(prune_nm_mask(w.data(), rows, cols, cols, c.n, c.m));
    const nm_matrix<S> s = quantize_nm<S>(w.data(), rows, cols, cols, pattern, kept_options<S>(16));
    const std::string what = std::to_string(c.n) + ":" + std::to_string(c.m);
    ASSERT_EQ(s.pattern().bits, pattern.bits) << what;
    ASSERT_EQ(s.kept_cols(), c.n * ((cols + c.m - 1) / c.m)) << what;
    std::vector<float> gathered(rows * s.kept_cols());
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < s.kept_cols(); ++j) {
        const std::size_t k = s.column(r, j);
        ASSERT_TRUE(pattern.kept(r, k)) << what;
        gathered[r * s.kept_cols() + j] = k < cols ? w[r * cols + k] : 0.0f;
      }
    if constexpr (is_plain_value<S>::value) {
      const std::vector<S> kept = s.kept_values();
      for (std::size_t i = 0; i < kept.size(); ++i) ASSERT_EQ(detail::plain_to_float(kept[i]), detail::plain_to_float(S(gathered[i])));
    } else {
      const quantized_matrix<S> expected = quantize<S>(gathered.data(), rows, s.kept_cols(), s.kept_cols(), kept_options<S>(16));
      const quantized_matrix<S> kept = s.kept_values();
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < s.kept_cols(); ++j) ASSERT_EQ(kept.code(r, j), expected.code(r, j)) << what;
    }
    const std::vector<float> dense = nm_to_dense(s);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t k = 0; k < cols; ++k)
        if (!pattern.kept(r, k)) {
          ASSERT_EQ(dense[r * cols + k], 0.0f) << what;
        }
    // Back through the dense form: the same pattern where the kept values are non-zero, the same values.
    const nm_pattern found = find_nm_pattern(dense.data(), rows, cols, cols, c.n, c.m);
    const nm_matrix<S> again = quantize_nm<S>(dense.data(), rows, cols, cols, found, kept_options<S>(16));
    if constexpr (is_plain_value<S>::value) {
      ASSERT_EQ(nm_to_dense(again), dense) << what;
    }
    // prune_and_quantize_nm is the same two steps.
    const nm_matrix<S> direct = prune_and_quantize_nm<S>(w.data(), rows, cols, cols, c.n, c.m, nullptr, kept_options<S>(16));
    ASSERT_EQ(direct.pattern().bits, pattern.bits) << what;
    ASSERT_EQ(nm_to_dense(direct), dense) << what;
  }
}

// y = x · Wᵀ + bias on every path against the float64 product with the dense matrix.
TYPED_TEST(nm_test, gemm_matches_the_dense_reference_on_every_path) {
  using S = TypeParam;
  uint32_t seed = 100;
  for (const nm_case& c : patterns)
    for (std::size_t k : {c.m * 32, c.m * 36 + 3})  // >= 32 kept values: the group size
      for (std::size_t n : {std::size_t(1), std::size_t(37)})
        for (std::size_t m : {1, 2, 3, 17, 64}) {
          ++seed;
          const std::vector<float> w = random_matrix(n, k, seed), x = random_matrix(m, k, seed + 1000);
          const std::vector<float> bias = random_matrix(1, n, seed + 2000);
          const nm_matrix<S> s = prune_and_quantize_nm<S>(w.data(), n, k, k, c.n, c.m, nullptr, kept_options<S>(32));
          expect_gemm_matches_dense_on_every_path(x, s, nm_to_dense(s), bias, m, n, k,
                                                  std::to_string(c.n) + ":" + std::to_string(c.m));
        }
}

// Kept values in the last group's padding (columns past K) multiply zeros, whatever they hold.
TEST(nm_gemm, padding_slots_multiply_zeros) {
  for (const nm_case& c : patterns) {
    const std::size_t n = 21, k = 5 * c.m + c.m / 2 + 1;  // the last group: M/2 - 1 slots past K
    nm_pattern pattern(n, k, c.n, c.m);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t g = 0; g < pattern.groups(); ++g)
        for (std::size_t i = 0; i < c.n; ++i) pattern.set(r, g * c.m + (c.m - 1 - (r + 3 * i) % c.m), true);
    const std::vector<float> kept = random_matrix(n, pattern.kept_cols(), 31);  // no zeros
    const nm_matrix<float> plain(kept.data(), n, pattern.kept_cols(), pattern.bits.data(), k, c.n, c.m);
    const quantized_matrix<scheme<int8>> q = quantize<scheme<int8>>(kept.data(), n, pattern.kept_cols(), pattern.kept_cols());
    const nm_matrix<scheme<int8>> quantized(q.view(), pattern.bits.data(), k, c.n, c.m);
    for (std::size_t m : {1, 3, 20}) {
      const std::vector<float> x = random_matrix(m, k, 32), bias = random_matrix(1, n, 33);
      const std::string what = std::to_string(c.n) + ":" + std::to_string(c.m) + " padding";
      expect_gemm_matches_dense_on_every_path(x, plain, nm_to_dense(plain), bias, m, n, k, what);
      expect_gemm_matches_dense_on_every_path(x, quantized, nm_to_dense(quantized), bias, m, n, k, what);
    }
  }
}

// Large K with several tiles of kept values (the 2:4 tile loop steps 128 kept values at a time).
TEST(nm_gemm, several_tiles_and_threads) {
  using S = scheme<int4>;
  const std::size_t n = 70, k = 1040, m = 40;
  const std::vector<float> w = random_matrix(n, k, 7), x = random_matrix(m, k, 8), bias = random_matrix(1, n, 9);
  for (const nm_case& c : patterns) {
    const nm_matrix<S> s = prune_and_quantize_nm<S>(w.data(), n, k, k, c.n, c.m, nullptr, {64});
    expect_gemm_matches_dense_on_every_path(x, s, nm_to_dense(s), bias, m, n, k, std::to_string(c.n) + ":" + std::to_string(c.m));
    std::vector<float> serial(m * n), threaded(m * n);
    gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(serial.data(), m, n), {bias.data()});
    thread_pool pool(3);
    gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(threaded.data(), m, n), {bias.data()}, pool);
    ASSERT_EQ(serial, threaded);
  }
}

}  // namespace
}  // namespace lowbit_test
