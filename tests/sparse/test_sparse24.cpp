// 2:4 sparsity: the positions' and kept values' validation, the reference layout round trip,
// pruning (magnitude and Wanda; prune_and_quantize24 = prune24 then quantize_sparse24), the
// weight-only GEMM on every path against the float64 reference of the dense matrix the sparse one
// stands for, and the int8 GEMM against the integer reference (bit-exact on power-of-two scales,
// with and without SmoothQuant channel scales), on odd shapes (K not a multiple of 4 included).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/exact_int8.hpp"
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

// Kept values as from a file, checked as bsr_matrix checks its values: a non-finite scale or a zero
// point that is not a code of the format is a lowbit::error.
TEST(sparse24, kept_values_contents_are_validated) {
  const std::size_t rows = 3, cols = 12;
  const std::vector<float> kept = random_matrix(rows, 6, 1);
  const sparse24_positions p(rows, cols);
  using S = scheme<int8>;
  for (const float bad : {NAN, INFINITY, -INFINITY}) {
    quantized_matrix<S> q = quantize<S>(kept.data(), rows, 6, 6);
    EXPECT_NO_THROW(sparse24_matrix<S>(q.view(), p.nibbles.data(), cols));
    q.scale(1, 0) = bad;
    EXPECT_THROW(sparse24_matrix<S>(q.view(), p.nibbles.data(), cols), lowbit::error) << bad;
  }
  using H = scheme<int4, fp16>;
  quantized_matrix<H> h = quantize<H>(kept.data(), rows, 6, 6);
  h.scale(2, 0) = fp16(INFINITY);
  EXPECT_THROW(sparse24_matrix<H>(h.view(), p.nibbles.data(), cols), lowbit::error);
  using Z = scheme<uint4, float, true>;
  quantized_matrix<Z> z = quantize<Z>(kept.data(), rows, 6, 6);
  z.zero(2, 0) = 15;  // the largest code: valid
  EXPECT_NO_THROW(sparse24_matrix<Z>(z.view(), p.nibbles.data(), cols));
  z.zero(2, 0) = 16;
  EXPECT_THROW(sparse24_matrix<Z>(z.view(), p.nibbles.data(), cols), lowbit::error);
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
  // prune_and_quantize24 is the same two steps, prune24 then quantize_sparse24, bit for bit: with
  // magnitude scores and with Wanda's (norms that change the pattern here).
  const std::vector<float> x = random_matrix(5, cols, 3, 4.0f);
  const std::vector<float> norms = activation_norms(matrix_view<const float>(x.data(), 5, cols));
  ASSERT_NE(prune24(w.data(), rows, cols, cols, norms.data()).nibbles, pattern.nibbles);
  for (const float* n : {static_cast<const float*>(nullptr), static_cast<const float*>(norms.data())}) {
    const sparse24_matrix<S> direct = prune_and_quantize24<S>(w.data(), rows, cols, cols, n, options);
    const sparse24_matrix<S> steps =
        quantize_sparse24<S>(w.data(), rows, cols, cols, prune24(w.data(), rows, cols, cols, n), options);
    const std::string what = n ? "wanda" : "magnitude";
    ASSERT_EQ(direct.positions().nibbles, steps.positions().nibbles) << what;
    const quantized_matrix<S> dv = direct.kept_values(), sv = steps.kept_values();
    ASSERT_EQ(dv.group_size(), sv.group_size()) << what;
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t j = 0; j < s.kept_cols(); ++j) ASSERT_EQ(dv.code(r, j), sv.code(r, j)) << what << " " << r << " " << j;
      for (std::size_t g = 0; g < dv.groups_per_row(); ++g) {
        ASSERT_EQ(scale_traits<typename S::scale_type>::to_float(dv.scale(r, g)),
                  scale_traits<typename S::scale_type>::to_float(sv.scale(r, g)))
            << what << " " << r << " " << g;
        if constexpr (S::has_zero) {
          ASSERT_EQ(dv.zero(r, g), sv.zero(r, g)) << what << " " << r << " " << g;
        }
      }
    }
    ASSERT_EQ(sparse24_to_dense(direct), sparse24_to_dense(steps)) << what;
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

// compute::int8: the integer path's definition (as reference::gemm_int8 states it for dense
// matrices) on the kept values: per group of kept values, the exact integer dot product of
// (u8(code) - u8(zero)) with the int8 activations at each value's own column, then times unit *
// scale * activation scale. Also the sum of the terms' magnitudes, per output.
template <class S>
reference::gemm_result int8_reference(const sparse24_matrix<S>& s, const int8_activations& a, const std::vector<float>& bias) {
  constexpr lowbit::detail::integer_code_map map = integer_codes<typename S::format>::value;
  const quantized_matrix<S> values = s.kept_values();
  const sparse24_positions positions = s.positions();
  const std::size_t m = a.rows(), n = s.rows(), k = s.cols(), kept = s.kept_cols();
  reference::gemm_result r{std::vector<double>(m * n), std::vector<double>(m * n)};
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t row = 0; row < n; ++row) {
      double sum = bias[row], size = std::fabs(bias[row]);
      for (std::size_t grp = 0; grp < values.groups_per_row(); ++grp) {
        const int zero = S::has_zero ? map.u8[values.zero(row, grp)] : map.offset;
        long long dot = 0, dot_size = 0;
        for (std::size_t j = grp * values.group_size(); j < std::min(kept, (grp + 1) * values.group_size()); ++j) {
          const unsigned nibble = positions.get(row, j / 2);
          const std::size_t col = 4 * (j / 2) + (j % 2 ? nibble >> 2 : nibble & 3u);
          const long long term = (map.u8[values.code(row, j)] - zero) * (col < k ? a.row(i)[col] : 0);
          dot += term;
          dot_size += term < 0 ? -term : term;
        }
        const double unit_scale = double(map.unit) * scale_traits<typename S::scale_type>::to_float(values.scale(row, grp)) * a.scale(i);
        sum += double(dot) * unit_scale;
        size += double(dot_size) * std::fabs(unit_scale);
      }
      r.y[i * n + row] = sum;
      r.magnitude[i * n + row] = size;
    }
  return r;
}

// The int8 GEMM on every path, and on 2 threads too where M >= 64 (the VNNI tile kernels) when
// `threaded`.
template <class S, class Check>
void for_int8_paths(const std::vector<float>& x, const sparse24_matrix<S>& s, const gemm_options& options, std::size_t m,
                    bool threaded, Check&& check) {
  const std::size_t n = s.rows(), k = s.cols();
  thread_pool pool(2);
  for (isa path : supported_isas())
    for (int threads = 1; threads <= (threaded && m >= 64 ? 2 : 1); ++threads) {
      std::vector<float> y(m * n, -1.0f);
      if (threads == 1) {
        gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(y.data(), m, n), options, serial_executor{},
             path);
      } else {
        gemm(matrix_view<const float>(x.data(), m, k), s, matrix_view<float>(y.data(), m, n), options, pool, path);
      }
      check(y, std::string("int8 ") + isa_name(path) + " threads=" + std::to_string(threads) + " m=" + std::to_string(m) +
                   " n=" + std::to_string(n) + " k=" + std::to_string(k));
    }
}

// Against the definition on random data (within 1e-5 of the terms' magnitudes), or refused for
// formats without an integer path.
TYPED_TEST(sparse24_test, int8_gemm_matches_the_integer_definition_on_every_path) {
  using S = TypeParam;
  uint32_t seed = 900;
  for (const sparse_case& c : cases) {
    const std::vector<float> w = random_matrix(c.n, c.k, ++seed);
    const std::size_t kept = 2 * sparse24_positions::groups_of(c.k);
    const std::size_t g = kept_group<S>(c.group_size ? c.group_size : kept);
    const std::vector<float> x = random_matrix(c.m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
    const sparse24_matrix<S> s = prune_and_quantize24<S>(w.data(), c.n, c.k, c.k, nullptr, quant_options{g});
    const gemm_options int8{bias.data(), compute::int8};
    if constexpr (!has_integer_path<typename S::format>) {
      std::vector<float> y(c.m * c.n);
      EXPECT_THROW(gemm(matrix_view<const float>(x.data(), c.m, c.k), s, matrix_view<float>(y.data(), c.m, c.n), int8),
                   lowbit::error);
      return;
    } else {
      int8_activations a;
      a.quantize(matrix_view<const float>(x.data(), c.m, c.k), c.k);
      const reference::gemm_result ref = int8_reference(s, a, bias);
      for_int8_paths(x, s, int8, c.m, true, [&](const std::vector<float>& y, const std::string& what) {
        for (std::size_t i = 0; i < y.size(); ++i)
          ASSERT_LE(std::fabs(double(y[i]) - ref.y[i]), 1e-5 * ref.magnitude[i] + 1e-30) << what << " output " << i;
      });
    }
  }
}

// Bit-exact on power-of-two scales (tests/common/exact_int8.hpp): M on the small-M kernel, the
// tiled one and VNNI's tile (K past its 2048-column block); odd cases with SmoothQuant channel
// scales (powers of two, so x / c is exact too).
const sparse_case exact_cases[] = {{1, 37, 101, 16}, {5, 45, 603, 0}, {17, 33, 1100, 32}, {66, 19, 2301, 32}};

TYPED_TEST(sparse24_test, int8_gemm_is_exact_on_power_of_two_scales) {
  using S = TypeParam;
  if constexpr (has_integer_path<typename S::format>) {
    uint32_t seed = 950;
    bool smooth = false;
    for (const sparse_case& c : exact_cases) {
      smooth = !smooth;
      const std::vector<float> w = random_matrix(c.n, c.k, ++seed);
      const std::size_t kept = 2 * sparse24_positions::groups_of(c.k);
      const sparse24_matrix<S> pruned =
          prune_and_quantize24<S>(w.data(), c.n, c.k, c.k, nullptr, quant_options{kept_group<S>(c.group_size ? c.group_size : kept)});
      quantized_matrix<S> values = pruned.kept_values();
      set_power_of_two_scales(values);
      const sparse24_matrix<S> s(values.view(), pruned.positions().nibbles.data(), c.k);
      const std::vector<float> channel = power_of_two_channel_scales(c.k), bias = exact_bias(c.n);
      const float* c_scales = smooth ? channel.data() : nullptr;
      const std::vector<float> x = exact_int8_rows(c.m, c.k, ++seed, c_scales);
      int8_activations a;
      a.quantize(matrix_view<const float>(x.data(), c.m, c.k), c.k, c_scales);
      for (std::size_t i = 0; i < c.m; ++i) ASSERT_EQ(a.scale(i), std::ldexp(1.0f, int(i % 3) - 1)) << "row " << i;
      const reference::gemm_result ref = int8_reference(s, a, bias);
      for_int8_paths(x, s, gemm_options{bias.data(), compute::int8, c_scales}, c.m, false,
                     [&](const std::vector<float>& y, const std::string& what) {
                       expect_exact(y, ref, c.n, integer_codes<typename S::format>::value.unit,
                                    [&](std::size_t i) { return a.scale(i); }, what + (smooth ? " channel scales" : ""));
                     });
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
  // SmoothQuant channel scales must be positive and finite.
  for (const float bad : {0.0f, -1.0f, NAN, INFINITY}) {
    std::vector<float> channel(k, 1.0f);
    channel[k - 3] = bad;
    EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 9, k), s, matrix_view<float>(y.data(), 9, n),
                      {nullptr, compute::int8, channel.data()}),
                 lowbit::error)
        << bad;
  }
  const sparse24_matrix<scheme<nf4, float>> nf = prune_and_quantize24<scheme<nf4, float>>(w.data(), n, k, k, nullptr, {64});
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 9, k), nf, matrix_view<float>(y.data(), 9, n), {nullptr, compute::int8}),
               lowbit::error);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 9, k), sparse24_matrix<S>(), matrix_view<float>(y.data(), 9, n)),
               lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
