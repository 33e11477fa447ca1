// 2:4 sparsity: the positions' validation, the reference layout round trip, pruning (magnitude
// and Wanda), the weight-only GEMM on every path against the float64 reference of the dense
// matrix the sparse one stands for, and the int8 GEMM against the integer reference, on odd
// shapes (K not a multiple of 4 included).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/gemm_check.hpp"
#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/kernels/gemm_sparse24.hpp"
#include "lowbit/kernels/reference/gemm.hpp"
#include "lowbit/prune/prune24.hpp"
#include "lowbit/sparse/sparse24_quantize.hpp"

namespace lowbit_test {
namespace {

template <class Scheme>
std::size_t kept_group(std::size_t requested) {
  return is_mx_scheme<Scheme>::value ? mx::block_size : requested;
}

TEST(sparse24, positions_must_be_distinct_and_ordered) {
  using S = scheme<int8>;
  const std::size_t rows = 3, cols = 12;
  const std::vector<float> kept = random_matrix(rows, 6, 1);
  const quantized_matrix<S> q = quantize<S>(kept.data(), rows, 6, 6);
  sparse24_positions p(rows, cols);
  EXPECT_NO_THROW(sparse24_matrix<S>(q.view(), p.nibbles.data(), cols));
  for (unsigned a : {0u, 1u, 2u, 3u})
    for (unsigned b : {0u, 1u, 2u, 3u}) {
      sparse24_positions bad = p;
      bad.set(2, 1, a, b);
      if (a < b) {
        EXPECT_NO_THROW(sparse24_matrix<S>(q.view(), bad.nibbles.data(), cols));
      } else {
        EXPECT_THROW(sparse24_matrix<S>(q.view(), bad.nibbles.data(), cols), lowbit::error) << a << " " << b;
      }
    }
  EXPECT_THROW(sparse24_matrix<S>(q.view(), nullptr, cols), lowbit::error);
  EXPECT_THROW(sparse24_matrix<S>(q.view(), p.nibbles.data(), 16), lowbit::error);  // needs 8 kept values
  EXPECT_NO_THROW(sparse24_matrix<S>(q.view(), p.nibbles.data(), 9));                // 9 columns: 3 groups too
}

template <class Scheme>
class sparse24_test : public ::testing::Test {};
TYPED_TEST_SUITE(sparse24_test, path_schemes);

// The kept values are quantize<Scheme> of the gathered values, the positions those of the
// pattern, and both come back bit for bit.
TYPED_TEST(sparse24_test, reference_layout_round_trips) {
  using S = TypeParam;
  const std::size_t rows = 21, cols = 70;
  const std::vector<float> w = random_matrix(rows, cols, 2);
  const sparse24_positions pattern = prune24(w.data(), rows, cols, cols);
  const quant_options options{kept_group<S>(16)};
  const sparse24_matrix<S> s = quantize_sparse24<S>(w.data(), rows, cols, cols, pattern, options);
  EXPECT_EQ(s.positions().nibbles, pattern.nibbles);
  std::vector<float> gathered(rows * s.kept_cols());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < s.kept_cols(); ++j) {
      const std::size_t k = j / 2 * 4 + s.position(r, j);
      gathered[r * s.kept_cols() + j] = k < cols ? w[r * cols + k] : 0.0f;
    }
  const quantized_matrix<S> expected = quantize<S>(gathered.data(), rows, s.kept_cols(), s.kept_cols(), options);
  const quantized_matrix<S> kept = s.kept_values();
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < s.kept_cols(); ++j) ASSERT_EQ(kept.code(r, j), expected.code(r, j)) << r << " " << j;
  // The dense matrix has the kept values where the pattern says, and is 2:4 itself.
  const std::vector<float> dense = sparse24_to_dense(s);
  const sparse24_positions found = find_sparse24_positions(dense.data(), rows, cols, cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < pattern.groups(); ++g) {
      const unsigned a = pattern.get(r, g) & 3u, b = pattern.get(r, g) >> 2;
      for (unsigned i = 0; i < 4 && 4 * g + i < cols; ++i)
        if (i != a && i != b) {
          ASSERT_EQ(dense[r * cols + 4 * g + i], 0.0f);
        }
      // A kept value that quantized to zero may be found elsewhere; non-zeros must be where they were.
      for (unsigned i : {found.get(r, g) & 3u, found.get(r, g) >> 2})
        if (4 * g + i < cols && dense[r * cols + 4 * g + i] != 0.0f) {
          EXPECT_TRUE(i == a || i == b);
        }
    }
}

TEST(prune24, magnitude_keeps_the_two_largest_and_wanda_weighs_by_activation_norms) {
  const float w[8] = {0.5f, -2.0f, 1.0f, 0.25f, /**/ 3.0f, 3.0f, -3.0f, 0.0f};
  const sparse24_positions m = prune24(w, 1, 8, 8);
  EXPECT_EQ(m.get(0, 0), 1u | 2u << 2);  // |-2| and |1|
  EXPECT_EQ(m.get(0, 1), 0u | 1u << 2);  // a three-way tie keeps the lower columns
  const float norms[8] = {10.0f, 0.1f, 1.0f, 1.0f, 1.0f, 1.0f, 2.0f, 100.0f};
  const sparse24_positions wanda = prune24(w, 1, 8, 8, norms);
  EXPECT_EQ(wanda.get(0, 0), 0u | 2u << 2);  // 5, 0.2, 1, 0.25
  EXPECT_EQ(wanda.get(0, 1), 0u | 2u << 2);  // 3, 3, 6, 0
  // Every group: each kept score at least each pruned one.
  const std::size_t rows = 9, cols = 39;
  const std::vector<float> big = random_matrix(rows, cols, 3);
  const std::vector<float> x = random_matrix(17, cols, 4);
  const std::vector<float> n = activation_norms(matrix_view<const float>(x.data(), 17, cols));
  const sparse24_positions p = prune24(big.data(), rows, cols, cols, n.data());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < p.groups(); ++g) {
      const unsigned a = p.get(r, g) & 3u, b = p.get(r, g) >> 2;
      ASSERT_LT(a, b);
      for (unsigned i = 0; i < 4 && 4 * g + i < cols; ++i) {
        if (i == a || i == b) continue;
        const float dropped = std::fabs(big[r * cols + 4 * g + i]) * n[4 * g + i];
        for (unsigned keep : {a, b})
          if (4 * g + keep < cols) {
            EXPECT_GE(std::fabs(big[r * cols + 4 * g + keep]) * n[4 * g + keep], dropped);
          }
      }
    }
  const float nan_norms[8] = {1, 1, 1, NAN, 1, 1, 1, 1};
  EXPECT_THROW(prune24(w, 1, 8, 8, nan_norms), lowbit::error);
  const float dense_row[4] = {1, 2, 3, 0};
  EXPECT_THROW(find_sparse24_positions(dense_row, 1, 4, 4), lowbit::error);
}

struct sparse_case {
  std::size_t m, n, k, group_size;
};
// Odd N and K (K % 4 = 1, 2, 3: padding positions), M on both sides of the small-M / tiled switch,
// K past a tile (256 kept values = 512 columns), several blocks of x rows through several tiles;
// M >= 64 with K past the VNNI 2:4 kernel's K block (2048 columns), groups cut by it or whole rows.
const sparse_case cases[] = {{1, 37, 101, 16},  {2, 16, 64, 32},  {3, 50, 266, 0},    {17, 33, 96, 16},
                             {64, 20, 128, 64}, {5, 45, 603, 0},  {4, 18, 1100, 32},  {100, 37, 530, 0},
                             {65, 17, 2301, 32}, {66, 19, 2150, 0}};

TYPED_TEST(sparse24_test, gemm_matches_the_dense_reference_on_every_path) {
  using S = TypeParam;
  uint32_t seed = 500;
  for (const sparse_case& c : cases) {
    const std::vector<float> w = random_matrix(c.n, c.k, ++seed);
    const std::size_t kept = 2 * sparse24_positions::groups_of(c.k);
    const std::size_t g = kept_group<S>(c.group_size ? c.group_size : kept);
    const std::vector<float> x = random_matrix(c.m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
    const std::vector<float> norms = activation_norms(matrix_view<const float>(x.data(), c.m, c.k));
    const sparse24_matrix<S> s = prune_and_quantize24<S>(w.data(), c.n, c.k, c.k, norms.data(), quant_options{g});
    expect_gemm_matches_dense_on_every_path(x, s, sparse24_to_dense(s), bias, c.m, c.n, c.k, "2:4");
  }
}

// compute::int8: against the integer path's definition (as reference::gemm_int8 states it for
// dense matrices) on the kept values: per group of kept values, the exact integer dot product of
// (u8(code) - u8(zero)) with the int8 activations at each value's own column, then times unit *
// scale * activation scale; or refused for formats without an integer path.
TYPED_TEST(sparse24_test, int8_gemm_matches_the_integer_definition_on_every_path) {
  using S = TypeParam;
  uint32_t seed = 900;
  for (const sparse_case& c : cases) {
    const std::vector<float> w = random_matrix(c.n, c.k, ++seed);
    const std::size_t kept = 2 * sparse24_positions::groups_of(c.k);
    const std::size_t g = kept_group<S>(c.group_size ? c.group_size : kept);
    const std::vector<float> x = random_matrix(c.m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
    const sparse24_matrix<S> s = prune_and_quantize24<S>(w.data(), c.n, c.k, c.k, nullptr, quant_options{g});
    std::vector<float> y(c.m * c.n, -1.0f);
    const gemm_options int8{bias.data(), compute::int8};
    if constexpr (!has_integer_path<typename S::format>) {
      EXPECT_THROW(gemm(matrix_view<const float>(x.data(), c.m, c.k), s, matrix_view<float>(y.data(), c.m, c.n), int8),
                   lowbit::error);
      return;
    } else {
      constexpr lowbit::detail::integer_code_map map = integer_codes<typename S::format>::value;
      const quantized_matrix<S> values = s.kept_values();
      const sparse24_positions positions = s.positions();
      int8_activations a;
      a.quantize(matrix_view<const float>(x.data(), c.m, c.k), c.k);
      std::vector<double> ref(c.m * c.n), magnitude(c.m * c.n);
      for (std::size_t i = 0; i < c.m; ++i)
        for (std::size_t r = 0; r < c.n; ++r) {
          double sum = bias[r], size = std::fabs(bias[r]);
          for (std::size_t grp = 0; grp < values.groups_per_row(); ++grp) {
            const int zero = S::has_zero ? map.u8[values.zero(r, grp)] : map.offset;
            long long dot = 0, dot_size = 0;
            for (std::size_t j = grp * values.group_size(); j < std::min(kept, (grp + 1) * values.group_size()); ++j) {
              const unsigned nibble = positions.get(r, j / 2);
              const std::size_t col = 4 * (j / 2) + (j % 2 ? nibble >> 2 : nibble & 3u);
              const long long term = (map.u8[values.code(r, j)] - zero) * (col < c.k ? a.row(i)[col] : 0);
              dot += term;
              dot_size += term < 0 ? -term : term;
            }
            const double unit_scale = double(map.unit) * scale_traits<typename S::scale_type>::to_float(values.scale(r, grp)) * a.scale(i);
            sum += double(dot) * unit_scale;
            size += double(dot_size) * std::fabs(unit_scale);
          }
          ref[i * c.n + r] = sum;
          magnitude[i * c.n + r] = size;
        }
      thread_pool pool(2);
      for (isa path : supported_isas())
        for (int threads = 1; threads <= (c.m >= 64 ? 2 : 1); ++threads) {  // the VNNI tile kernels on 2 threads too
          std::fill(y.begin(), y.end(), -1.0f);
          if (threads == 1) {
            gemm(matrix_view<const float>(x.data(), c.m, c.k), s, matrix_view<float>(y.data(), c.m, c.n), int8,
                 serial_executor{}, path);
          } else {
            gemm(matrix_view<const float>(x.data(), c.m, c.k), s, matrix_view<float>(y.data(), c.m, c.n), int8, pool,
                 path);
          }
          for (std::size_t i = 0; i < y.size(); ++i)
            ASSERT_LE(std::fabs(double(y[i]) - ref[i]), 1e-5 * magnitude[i] + 1e-30)
                << "int8 " << isa_name(path) << " threads=" << threads << " m=" << c.m << " n=" << c.n << " k=" << c.k
                << " output " << i;
        }
    }
  }
}

TEST(sparse24, gemm_threads_and_errors) {
  using S = scheme<int4, fp16>;
  const std::size_t n = 300, k = 256;
  const std::vector<float> w = random_matrix(n, k, 7), x = random_matrix(70, k, 8);
  const sparse24_matrix<S> s = prune_and_quantize24<S>(w.data(), n, k, k, nullptr, {64});
  thread_pool pool(3);
  for (std::size_t m : {std::size_t(1), std::size_t(9)}) {
    std::vector<float> serial(m * n), threaded(m * n);
    gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(serial.data(), m, n));
    gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(threaded.data(), m, n), {}, pool);
    EXPECT_EQ(serial, threaded) << "m=" << m;
  }
  std::vector<float> y(9 * n);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 9, k - 1), s, matrix_view<float>(y.data(), 9, n)), lowbit::error);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 9, k), s, matrix_view<float>(y.data(), 9, n - 1)), lowbit::error);
  for (std::size_t m : {std::size_t(1), std::size_t(9), std::size_t(70)}) {  // the integer path over threads, too
    std::vector<float> serial(m * n), threaded(m * n);
    const gemm_options int8{nullptr, compute::int8};
    gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(serial.data(), m, n), int8);
    gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(threaded.data(), m, n), int8, pool);
    EXPECT_EQ(serial, threaded) << "int8 m=" << m;
  }
  const sparse24_matrix<scheme<nf4, float>> nf = prune_and_quantize24<scheme<nf4, float>>(w.data(), n, k, k, nullptr, {64});
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 9, k), nf, matrix_view<float>(y.data(), 9, n), {nullptr, compute::int8}),
               lowbit::error);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 9, k), sparse24_matrix<S>(), matrix_view<float>(y.data(), 9, n)),
               lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
