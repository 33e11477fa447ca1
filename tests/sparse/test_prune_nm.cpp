// N:M pruning: masks against a brute-force ranking on random, tie-rich and odd shapes (magnitude
// and Wanda), 2:4 against prune24, which N:M fit the 2:4 kernels (against the pruner's own worst
// case), the packing onto sparse24_matrix (round trip to the pruned dense matrix, GEMM on every
// path against the dense reference), and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/gemm_check.hpp"
#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/kernels/gemm_sparse24.hpp"
#include "lowbit/kernels/reference/gemm.hpp"
#include "lowbit/prune/prune24.hpp"
#include "lowbit/prune/prune_nm.hpp"
#include "lowbit/prune/prune_nm24.hpp"

namespace lowbit_test {
namespace {

struct nm {
  std::size_t n, m;
};
const nm patterns[] = {{1, 2}, {2, 4}, {1, 4}, {3, 4}, {2, 8}, {4, 8}, {3, 8}, {2, 3},
                       {5, 7}, {3, 5}, {1, 32}, {16, 32}, {31, 32}};

// Weight k of row r is kept iff fewer than min(n, L) columns of its group (L columns) rank
// before it: a higher score, or an equal score at a lower column.
std::vector<uint8_t> brute_force_mask(const std::vector<float>& w, std::size_t rows, std::size_t cols, std::size_t n,
                                      std::size_t m, const float* norms) {
  std::vector<uint8_t> keep(rows * cols, 0);
  const auto score = [&](std::size_t r, std::size_t k) { return std::fabs(w[r * cols + k]) * (norms ? norms[k] : 1.0f); };
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < cols; ++k) {
      const std::size_t start = k / m * m, end = std::min(cols, start + m);
      std::size_t before = 0;
      for (std::size_t j = start; j < end; ++j)
        before += score(r, j) > score(r, k) || (score(r, j) == score(r, k) && j < k);
      keep[r * cols + k] = before < std::min(n, end - start);
    }
  return keep;
}

// Values on a coarse grid (many ties, zeros and sign-only differences among them).
std::vector<float> tie_rich(std::size_t rows, std::size_t cols, uint32_t seed) {
  std::vector<float> w = random_matrix(rows, cols, seed);
  for (float& v : w) v = std::round(v * 2.0f) / 2.0f;
  return w;
}

TEST(prune_nm, masks_match_the_brute_force_ranking) {
  uint32_t seed = 10;
  for (const nm p : patterns)
    for (std::size_t cols : {std::size_t(1), std::size_t(3), std::size_t(37), std::size_t(70), std::size_t(96)})
      for (bool ties : {false, true}) {
        const std::size_t rows = 7;
        const std::vector<float> w = ties ? tie_rich(rows, cols, ++seed) : random_matrix(rows, cols, ++seed);
        const std::vector<float> x = random_matrix(5, cols, ++seed);
        std::vector<float> norms = activation_norms(matrix_view<const float>(x.data(), 5, cols));
        if (ties)
          for (float& v : norms) v = std::round(v);  // equal and zero norms too
        for (const float* nr : {static_cast<const float*>(nullptr), static_cast<const float*>(norms.data())}) {
          const nm_mask mask = prune_nm_mask(w.data(), rows, cols, cols, p.n, p.m, nr);
          ASSERT_EQ(mask.keep, brute_force_mask(w, rows, cols, p.n, p.m, nr))
              << p.n << ":" << p.m << " cols=" << cols << (ties ? " ties" : "") << (nr ? " wanda" : " magnitude");
          // Every full group keeps exactly n, the last one min(n, L).
          for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t start = 0; start < cols; start += p.m) {
              std::size_t kept = 0;
              for (std::size_t k = start; k < std::min(cols, start + p.m); ++k) kept += mask.kept(r, k);
              ASSERT_EQ(kept, std::min(p.n, std::min(cols, start + p.m) - start)) << p.n << ":" << p.m << " row " << r;
            }
          // The pruned weights: w where kept, zeros elsewhere.
          const std::vector<float> pruned = prune_nm(w.data(), rows, cols, cols, p.n, p.m, nr);
          for (std::size_t i = 0; i < w.size(); ++i) ASSERT_EQ(pruned[i], mask.keep[i] ? w[i] : 0.0f) << i;
        }
      }
}

TEST(prune_nm, ties_keep_the_lower_column_and_wanda_weighs_by_activation_norms) {
  const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  const nm_mask four = prune_nm_mask(ones, 1, 8, 8, 4, 8);
  EXPECT_EQ(four.keep, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 0, 0}));
  const float signs[8] = {-3, 3, 1, 3, 0, 0, 0, 0};
  EXPECT_EQ(prune_nm_mask(signs, 1, 8, 8, 1, 4).keep, (std::vector<uint8_t>{1, 0, 0, 0, 1, 0, 0, 0}));
  const float norms[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(prune_nm_mask(ones, 1, 8, 8, 2, 8, norms).keep, (std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 1, 1}));
  const float w[6] = {4, 1, 1, 1, 1, 1};
  const float w_norms[6] = {0.1f, 1, 1, 1, 1, 0.5f};  // 0.4, 1, 1, 1 | 1, 0.5
  EXPECT_EQ(prune_nm_mask(w, 1, 6, 6, 2, 4, w_norms).keep, (std::vector<uint8_t>{0, 1, 1, 0, 1, 1}));
  EXPECT_EQ(prune_nm_mask(w, 1, 6, 6, 1, 4, w_norms).keep, (std::vector<uint8_t>{0, 1, 0, 0, 1, 0}));
}

// 2:4 is prune24's pattern, with and without norms, ties and K % 4 != 0 included.
TEST(prune_nm, two_of_four_is_prune24) {
  uint32_t seed = 40;
  for (std::size_t cols : {std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(41), std::size_t(64)})
    for (bool ties : {false, true}) {
      const std::size_t rows = 9;
      const std::vector<float> w = ties ? tie_rich(rows, cols, ++seed) : random_matrix(rows, cols, ++seed);
      const std::vector<float> x = random_matrix(3, cols, ++seed);
      const std::vector<float> norms = activation_norms(matrix_view<const float>(x.data(), 3, cols));
      for (const float* nr : {static_cast<const float*>(nullptr), static_cast<const float*>(norms.data())})
        EXPECT_EQ(nm_to_sparse24_positions(prune_nm_mask(w.data(), rows, cols, cols, 2, 4, nr)).nibbles,
                  prune24(w.data(), rows, cols, cols, nr).nibbles)
            << "cols=" << cols << (ties ? " ties" : "") << (nr ? " wanda" : "");
    }
}

// nm_fits_sparse24 against the pruner: for each aligned 4 of a row two periods long, weights that
// are larger there than anywhere else make every group keep all it can inside it.
TEST(prune_nm, which_patterns_fit_the_2_4_kernels) {
  for (std::size_t m = 2; m <= max_nm_group; ++m)
    for (std::size_t n = 1; n < m; ++n) {
      const std::size_t cols = 8 * m;  // two periods of lcm(4, m) at least
      std::size_t most = 0;
      for (std::size_t start = 0; start < cols; start += 4) {
        std::vector<float> w(cols, 1.0f);
        for (std::size_t k = start; k < start + 4; ++k) w[k] = 2.0f;
        const nm_mask mask = prune_nm_mask(w.data(), 1, cols, cols, n, m);
        std::size_t kept = 0;
        for (std::size_t k = start; k < start + 4; ++k) kept += mask.kept(0, k);
        most = std::max(most, kept);
      }
      ASSERT_EQ(nm_fits_sparse24(n, m), most <= 2) << n << ":" << m << " keeps up to " << most << " of an aligned 4";
    }
  for (const nm p : {nm{1, 2}, nm{1, 3}, nm{1, 4}, nm{2, 4}, nm{1, 8}, nm{2, 8}, nm{2, 12}, nm{2, 32}, nm{1, 31}})
    EXPECT_TRUE(nm_fits_sparse24(p.n, p.m)) << p.n << ":" << p.m;
  for (const nm p : {nm{3, 4}, nm{4, 8}, nm{3, 8}, nm{2, 3}, nm{2, 5}, nm{2, 6}, nm{2, 10}, nm{16, 32}})
    EXPECT_FALSE(nm_fits_sparse24(p.n, p.m)) << p.n << ":" << p.m;
  // Random weights: a fitting pattern always packs.
  uint32_t seed = 70;
  for (std::size_t m = 2; m <= 16; ++m)
    for (std::size_t n = 1; n < m; ++n)
      if (nm_fits_sparse24(n, m)) {
        const std::vector<float> w = random_matrix(16, 45, ++seed);
        EXPECT_NO_THROW(nm_to_sparse24_positions(prune_nm_mask(w.data(), 16, 45, 45, n, m))) << n << ":" << m;
      }
}

template <class T>
class prune_nm24_test : public ::testing::Test {};
using nm24_schemes = ::testing::Types<float, bf16, scheme<int4, fp16>, scheme<int8>, scheme<uint4, float, true>>;
TYPED_TEST_SUITE(prune_nm24_test, nm24_schemes);

struct gemm_case {
  std::size_t m, n, k;
};

// The packed matrix stands for the pruned dense weights (exactly, for fp32 kept values; with
// zeros wherever the mask prunes, for every scheme), and the 2:4 GEMM on it matches the dense
// reference on every path, on both sides of the small-M / tiled switch and with K % 4 != 0.
TYPED_TEST(prune_nm24_test, packs_onto_2_4_and_the_gemm_matches_the_dense_reference) {
  using S = TypeParam;
  const gemm_case cases[] = {{1, 37, 101}, {3, 20, 70}, {17, 33, 258}, {64, 19, 96}};
  const nm fitting[] = {{1, 2}, {1, 4}, {1, 3}, {2, 8}, {1, 8}, {2, 12}};
  uint32_t seed = 100;
  for (const nm p : fitting)
    for (const gemm_case& c : cases) {
      const std::vector<float> w = random_matrix(c.n, c.k, ++seed);
      const std::vector<float> x = random_matrix(c.m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
      const std::vector<float> norms = activation_norms(matrix_view<const float>(x.data(), c.m, c.k));
      const nm_mask mask = prune_nm_mask(w.data(), c.n, c.k, c.k, p.n, p.m, norms.data());
      quant_options options{};
      if constexpr (!is_plain_value<S>::value) options = quant_options{32};
      const sparse24_matrix<S> s = prune_and_quantize_nm24<S>(w.data(), c.n, c.k, c.k, p.n, p.m, norms.data(), options);
      EXPECT_EQ(s.positions().nibbles, nm_to_sparse24_positions(mask).nibbles);
      const std::vector<float> dense = sparse24_to_dense(s);
      if constexpr (std::is_same<S, float>::value) {
        ASSERT_EQ(dense, apply_nm_mask(w.data(), c.n, c.k, c.k, mask)) << p.n << ":" << p.m;
      } else {
        for (std::size_t i = 0; i < dense.size(); ++i)
          if (!mask.keep[i]) {
            ASSERT_EQ(dense[i], 0.0f) << p.n << ":" << p.m << " weight " << i;
          }
      }
      expect_gemm_matches_dense_on_every_path(x, s, dense, bias, c.m, c.n, c.k,
                                              std::to_string(p.n) + ":" + std::to_string(p.m));
    }
}

TEST(prune_nm, bad_input_is_an_error) {
  const std::vector<float> w = random_matrix(4, 16, 1);
  const float* p = w.data();
  for (const nm bad : {nm{0, 4}, nm{4, 4}, nm{5, 4}, nm{1, 1}, nm{0, 0}, nm{1, 33}, nm{2, 64}}) {
    EXPECT_THROW(prune_nm_mask(p, 4, 16, 16, bad.n, bad.m), lowbit::error) << bad.n << ":" << bad.m;
    EXPECT_THROW(prune_nm(p, 4, 16, 16, bad.n, bad.m), lowbit::error) << bad.n << ":" << bad.m;
    EXPECT_THROW(nm_fits_sparse24(bad.n, bad.m), lowbit::error) << bad.n << ":" << bad.m;
  }
  EXPECT_THROW(prune_nm_mask(nullptr, 4, 16, 16, 2, 8), lowbit::error);
  EXPECT_THROW(prune_nm_mask(p, 0, 16, 16, 2, 8), lowbit::error);
  EXPECT_THROW(prune_nm_mask(p, 4, 0, 16, 2, 8), lowbit::error);
  EXPECT_THROW(prune_nm_mask(p, 4, 16, 15, 2, 8), lowbit::error);
  std::vector<float> nan_w = w;
  nan_w[17] = NAN;
  EXPECT_THROW(prune_nm_mask(nan_w.data(), 4, 16, 16, 2, 8), lowbit::error);
  std::vector<float> norms(16, 1.0f);
  norms[3] = -1.0f;
  EXPECT_THROW(prune_nm_mask(p, 4, 16, 16, 2, 8, norms.data()), lowbit::error);
  norms[3] = INFINITY;
  EXPECT_THROW(prune_nm_mask(p, 4, 16, 16, 2, 8, norms.data()), lowbit::error);
  // Masks of another shape, or broken ones.
  const nm_mask mask = prune_nm_mask(p, 4, 16, 16, 1, 4);
  EXPECT_THROW(apply_nm_mask(p, 4, 12, 16, mask), lowbit::error);
  EXPECT_THROW(apply_nm_mask(p, 3, 16, 16, mask), lowbit::error);
  nm_mask short_mask = mask;
  short_mask.keep.pop_back();
  EXPECT_THROW(apply_nm_mask(p, 4, 16, 16, short_mask), lowbit::error);
  EXPECT_THROW(nm_to_sparse24_positions(short_mask), lowbit::error);
  EXPECT_THROW(nm_to_sparse24_positions(nm_mask()), lowbit::error);
  // Patterns that do not fit 2:4: refused before pruning; a mask keeping 3 of an aligned 4 too.
  using S = scheme<int4, fp16>;
  for (const nm no : {nm{4, 8}, nm{3, 8}, nm{3, 4}, nm{2, 6}}) {
    EXPECT_THROW(prune_and_quantize_nm24<S>(p, 4, 16, 16, no.n, no.m), lowbit::error) << no.n << ":" << no.m;
  }
  const float front[8] = {4, 3, 2, 1, 0, 0, 0, 0};  // 4:8 keeps columns 0..3
  EXPECT_THROW(nm_to_sparse24_positions(prune_nm_mask(front, 1, 8, 8, 4, 8)), lowbit::error);
  const float spread[8] = {4, 3, 0, 0, 2, 1, 0, 0};  // 4:8 keeping 2 of each aligned 4 does pack
  EXPECT_NO_THROW(nm_to_sparse24_positions(prune_nm_mask(spread, 1, 8, 8, 4, 8)));
  EXPECT_THROW(prune_and_quantize_nm24<S>(p, 4, 16, 16, 0, 4), lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
