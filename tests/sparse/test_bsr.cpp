// Block-sparse rows: validation of the structure, pruning to a density, the reference layout
// round trip, and the weight-only GEMM on every path against the float64 reference of the dense
// matrix, for panel block shapes (16 x 8, 32 x 32, 48 x 16) and row-kernel ones (1 x 16, 4 x 4, 3 x 5,
// 2 x 8 with groups of 2, 3 x 4),
// with empty block rows; compute::int8 against the integer reference where the shape allows it
// (bit-exact on power-of-two scales, with and without SmoothQuant channel scales).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/exact_int8.hpp"
#include "common/gemm_check.hpp"
#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/kernels/gemm_bsr.hpp"
#include "lowbit/kernels/reference/gemm.hpp"
#include "lowbit/sparse/bsr_quantize.hpp"

namespace lowbit_test {
namespace {

TEST(bsr, structure_is_validated) {
  const uint32_t row_ptr[] = {0, 2, 2, 3}, col_idx[] = {0, 3, 1};
  EXPECT_NO_THROW(bsr_structure(12, 16, 4, 4, row_ptr, col_idx));
  EXPECT_THROW(bsr_structure(12, 18, 4, 4, row_ptr, col_idx), lowbit::error);  // 4 does not divide 18
  EXPECT_THROW(bsr_structure(12, 16, 4, 0, row_ptr, col_idx), lowbit::error);
  EXPECT_THROW(bsr_structure(12, 12, 4, 4, row_ptr, col_idx), lowbit::error);  // column 3 of 3
  const uint32_t bad_start[] = {1, 2, 2, 3}, decreasing[] = {0, 2, 1, 3}, too_many[] = {0, 5, 5, 5};
  EXPECT_THROW(bsr_structure(12, 16, 4, 4, bad_start, col_idx), lowbit::error);
  EXPECT_THROW(bsr_structure(12, 16, 4, 4, decreasing, col_idx), lowbit::error);
  EXPECT_THROW(bsr_structure(12, 16, 4, 4, too_many, col_idx), lowbit::error);
  const uint32_t unsorted[] = {3, 0, 1}, repeated[] = {1, 1, 1};
  EXPECT_THROW(bsr_structure(12, 16, 4, 4, row_ptr, unsorted), lowbit::error);
  EXPECT_THROW(bsr_structure(12, 16, 4, 4, row_ptr, repeated), lowbit::error);
  EXPECT_THROW(bsr_structure(12, 16, 4, 4, nullptr, col_idx), lowbit::error);
  EXPECT_THROW(bsr_structure(12, 16, 4, 4, row_ptr, nullptr), lowbit::error);
  // Values must match the structure.
  using S = scheme<int8>;
  const bsr_structure s(12, 16, 4, 4, row_ptr, col_idx);
  const std::vector<float> v = random_matrix(3 * 4, 4, 1);
  const quantized_matrix<S> q = quantize<S>(v.data(), 12, 4, 4);
  EXPECT_NO_THROW(bsr_matrix<S>(s, q.view()));
  const quantized_matrix<S> short_values = quantize<S>(v.data(), 8, 4, 4);
  EXPECT_THROW(bsr_matrix<S>(s, short_values.view()), lowbit::error);
  quantized_matrix<S> nan_scale = quantize<S>(v.data(), 12, 4, 4);
  nan_scale.scale(5, 0) = NAN;
  EXPECT_THROW(bsr_matrix<S>(s, nan_scale.view()), lowbit::error);
}

TEST(bsr, pruning_keeps_the_largest_blocks) {
  const std::size_t rows = 8, cols = 12;
  std::vector<float> w(rows * cols, 0.01f);
  for (std::size_t r = 4; r < 8; ++r)
    for (std::size_t k = 8; k < 12; ++k) w[r * cols + k] = 3.0f;  // block (1, 2): largest
  for (std::size_t k = 0; k < 4; ++k) w[k] = -2.0f;                  // block (0, 0): second
  const bsr_structure one = prune_blocks(w.data(), rows, cols, cols, 4, 4, 1.0 / 6);
  ASSERT_EQ(one.blocks(), 1u);
  EXPECT_EQ(one.row_ptr, (std::vector<uint32_t>{0, 0, 1}));
  EXPECT_EQ(one.col_idx, (std::vector<uint32_t>{2}));
  const bsr_structure two = prune_blocks(w.data(), rows, cols, cols, 4, 4, 2.0 / 6);
  EXPECT_EQ(two.row_ptr, (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(two.col_idx, (std::vector<uint32_t>{0, 2}));
  EXPECT_DOUBLE_EQ(two.density(), 2.0 / 6);
  EXPECT_THROW(prune_blocks(w.data(), rows, cols, cols, 4, 4, 0.0), lowbit::error);
  EXPECT_THROW(prune_blocks(w.data(), rows, cols, cols, 3, 4, 0.5), lowbit::error);
  // find_bsr_structure sees exactly the non-zero blocks.
  std::vector<float> sparse(rows * cols, 0.0f);
  sparse[5 * cols + 7] = 1.0f;
  const bsr_structure found = find_bsr_structure(sparse.data(), rows, cols, cols, 4, 4);
  EXPECT_EQ(found.row_ptr, (std::vector<uint32_t>{0, 0, 1}));
  EXPECT_EQ(found.col_idx, (std::vector<uint32_t>{1}));
}

struct bsr_case {
  std::size_t n, k, br, bc, group_size;
  double density;
};
const bsr_case shapes[] = {{48, 96, 16, 8, 8, 0.5},   {64, 128, 32, 32, 0, 0.3}, {96, 64, 48, 16, 16, 0.6},
                           {20, 48, 1, 16, 16, 0.4},  {16, 20, 4, 4, 4, 0.5},    {32, 64, 32, 32, 32, 0.1},
                           {12, 30, 3, 5, 5, 0.5},  // 3 x 5: rows of 4-bit codes end mid-byte
                           {24, 40, 2, 8, 2, 0.5},  // groups of 2: every path's per-lane scale spread
                           {12, 32, 3, 4, 4, 0.6}};  // 12 values a block: batches end inside blocks
const std::size_t ms[] = {1, 3, 5, 17, 64};

// The dense quantized matrix with the blocks' codes and scales, zero codes (and a zero scale)
// elsewhere: its integer reference (reference::gemm_int8) is the BSR one.
template <class Scheme>
quantized_matrix<Scheme> dense_values_of(const bsr_matrix<Scheme>& b) {
  const bsr_structure& s = b.structure();
  const std::size_t br = s.block_rows, bc = s.block_cols;
  const quantized_matrix<Scheme> values = b.values();
  quantized_matrix<Scheme> dense(b.rows(), b.cols(), b.group_size());
  const std::size_t gpb = bc / b.group_size();
  for (std::size_t r = 0; r < s.block_row_count(); ++r)
    for (std::size_t i = s.row_ptr[r]; i < s.row_ptr[r + 1]; ++i)
      for (std::size_t y0 = 0; y0 < br; ++y0) {
        const std::size_t row = r * br + y0, src = i * br + y0;
        for (std::size_t x0 = 0; x0 < bc; ++x0) dense.set_code(row, s.col_idx[i] * bc + x0, values.code(src, x0));
        for (std::size_t g = 0; g < gpb; ++g) {
          dense.scale(row, s.col_idx[i] * gpb + g) = values.scale(src, g);
          if (Scheme::has_zero) dense.zero(row, s.col_idx[i] * gpb + g) = values.zero(src, g);
        }
      }
  return dense;
}

// compute::int8: against the integer definition on the dense matrix (within 1e-5 of the terms'
// magnitudes) on every block shape, or refused for formats without integer codes.
template <class Scheme>
void check_int8_path(const bsr_matrix<Scheme>& b, const std::vector<float>& x,
                     const std::vector<float>& bias, std::size_t m, const bsr_case& c) {
  std::vector<float> y(m * c.n, -1.0f);
  const gemm_options int8{bias.data(), compute::int8};
  if constexpr (!has_integer_path<typename Scheme::format>) {
    EXPECT_THROW(gemm(matrix_view<const float>(x.data(), m, c.k), b, matrix_view<float>(y.data(), m, c.n), int8),
                 lowbit::error);
  } else {
    const quantized_matrix<Scheme> dense = dense_values_of(b);
    int8_activations a;
    a.quantize(matrix_view<const float>(x.data(), m, c.k), b.group_size());
    const reference::gemm_result ref = reference::gemm_int8(a, dense.view(), bias.data());
    for (isa path : supported_isas()) {
      std::fill(y.begin(), y.end(), -1.0f);
      gemm(matrix_view<const float>(x.data(), m, c.k), b, matrix_view<float>(y.data(), m, c.n), int8, serial_executor{},
           path);
      for (std::size_t i = 0; i < y.size(); ++i)
        ASSERT_LE(std::fabs(double(y[i]) - ref.y[i]), 1e-5 * ref.magnitude[i] + 1e-30)
            << "int8 " << isa_name(path) << " " << c.br << "x" << c.bc << " m=" << m << " output " << i;
    }
  }
}

template <class Scheme>
class bsr_test : public ::testing::Test {};
TYPED_TEST_SUITE(bsr_test, path_schemes);

TYPED_TEST(bsr_test, values_round_trip_and_gemm_matches_the_dense_reference) {
  using S = TypeParam;
  uint32_t seed = 700;
  for (const bsr_case& c : shapes) {
    const std::size_t g = is_mx_scheme<S>::value ? std::min<std::size_t>(mx::block_size, c.bc) : c.group_size;
    if (g != 0 && c.bc % g != 0) continue;  // an MX block of 32 does not fit a 4- or 8-wide block
    const std::vector<float> w = random_matrix(c.n, c.k, ++seed);
    const bsr_matrix<S> b = prune_and_quantize_blocks<S>(w.data(), c.n, c.k, c.k, c.br, c.bc, c.density, {g});
    // Round trip: the values are quantize<S> of the gathered blocks.
    const bsr_structure& s = b.structure();
    std::vector<float> gathered(s.blocks() * c.br * c.bc);
    for (std::size_t r = 0; r < s.block_row_count(); ++r)
      for (std::size_t i = s.row_ptr[r]; i < s.row_ptr[r + 1]; ++i)
        for (std::size_t y = 0; y < c.br; ++y)
          for (std::size_t x = 0; x < c.bc; ++x)
            gathered[(i * c.br + y) * c.bc + x] = w[(r * c.br + y) * c.k + s.col_idx[i] * c.bc + x];
    const quantized_matrix<S> expected = quantize<S>(gathered.data(), s.blocks() * c.br, c.bc, c.bc, {g});
    const quantized_matrix<S> values = b.values();
    for (std::size_t r = 0; r < values.rows(); ++r)
      for (std::size_t k = 0; k < c.bc; ++k) ASSERT_EQ(values.code(r, k), expected.code(r, k));

    const std::vector<float> dense = bsr_to_dense(b);
    for (std::size_t m : ms) {
      const std::vector<float> x = random_matrix(m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
      expect_gemm_matches_dense_on_every_path(
          x, b, dense, bias, m, c.n, c.k,
          std::to_string(c.br) + "x" + std::to_string(c.bc) + " vectorized=" + std::to_string(b.vectorized()));
      check_int8_path(b, x, bias, m, c);
    }
  }
}

// Bit-exact on power-of-two scales (tests/common/exact_int8.hpp), on panel block shapes (K past
// the integer kernel's K block, M on the one-row and the register-block kernels) and on the row
// kernel's (1 x 16, 4 x 4, 2 x 8); every other case with SmoothQuant channel scales (powers of two: x / c exact).
const bsr_case exact_shapes[] = {{64, 128, 32, 32, 0, 0.3}, {96, 64, 48, 16, 16, 0.6}, {32, 2176, 32, 64, 32, 0.5},
                                 {32, 64, 32, 32, 32, 0.1}, {20, 768, 1, 16, 16, 0.4},  {16, 80, 4, 4, 4, 0.5},
                                 {24, 40, 2, 8, 2, 0.5}};

TYPED_TEST(bsr_test, int8_gemm_is_exact_on_power_of_two_scales) {
  using S = TypeParam;
  if constexpr (has_integer_path<typename S::format>) {
    uint32_t seed = 750;
    bool smooth = false;
    for (const bsr_case& c : exact_shapes) {
      const std::size_t g = is_mx_scheme<S>::value ? std::min<std::size_t>(mx::block_size, c.bc) : c.group_size;
      const std::vector<float> w = random_matrix(c.n, c.k, ++seed);
      const bsr_matrix<S> pruned = prune_and_quantize_blocks<S>(w.data(), c.n, c.k, c.k, c.br, c.bc, c.density, {g});
      quantized_matrix<S> values = pruned.values();
      set_power_of_two_scales(values);
      const bsr_matrix<S> b(pruned.structure(), values.view());
      ASSERT_EQ(b.vectorized(), c.br % 16 == 0) << c.br << "x" << c.bc;
      const quantized_matrix<S> dense = dense_values_of(b);
      const std::vector<float> channel = power_of_two_channel_scales(c.k), bias = exact_bias(c.n);
      for (std::size_t m : {std::size_t(1), std::size_t(3), std::size_t(17)}) {
        smooth = !smooth;
        const float* c_scales = smooth ? channel.data() : nullptr;
        const std::vector<float> x = exact_int8_rows(m, c.k, ++seed, c_scales);
        int8_activations a;
        a.quantize(matrix_view<const float>(x.data(), m, c.k), b.group_size(), c_scales);
        for (std::size_t i = 0; i < m; ++i) ASSERT_EQ(a.scale(i), std::ldexp(1.0f, int(i % 3) - 1)) << "row " << i;
        const reference::gemm_result ref = reference::gemm_int8(a, dense.view(), bias.data());
        for (isa path : supported_isas()) {
          std::vector<float> y(m * c.n, -1.0f);
          gemm(matrix_view<const float>(x.data(), m, c.k), b, matrix_view<float>(y.data(), m, c.n),
               gemm_options{bias.data(), compute::int8, c_scales}, serial_executor{}, path);
          expect_exact(y, ref, c.n, integer_codes<typename S::format>::value.unit, [&](std::size_t i) { return a.scale(i); },
                       std::string("int8 ") + isa_name(path) + " " + std::to_string(c.br) + "x" + std::to_string(c.bc) +
                           " m=" + std::to_string(m) + " k=" + std::to_string(c.k) + (smooth ? " channel scales" : ""));
        }
      }
    }
  }
}

TEST(bsr, gemm_threads_and_errors) {
  using S = scheme<int4, fp16>;
  const std::size_t n = 320, k = 256;
  const std::vector<float> w = random_matrix(n, k, 9), x = random_matrix(17, k, 10);
  const bsr_matrix<S> b = prune_and_quantize_blocks<S>(w.data(), n, k, k, 32, 32, 0.25, {32});
  ASSERT_TRUE(b.vectorized());
  thread_pool pool(3);
  for (compute mode : {compute::weight_only, compute::int8})
    for (std::size_t m : {std::size_t(1), std::size_t(7)}) {
      std::vector<float> serial(m * n), threaded(m * n);
      gemm(matrix_view<const float>(x.data(), m, k), b, matrix_view<float>(serial.data(), m, n), {nullptr, mode});
      gemm(matrix_view<const float>(x.data(), m, k), b, matrix_view<float>(threaded.data(), m, n), {nullptr, mode}, pool);
      EXPECT_EQ(serial, threaded) << "m=" << m;
    }
  // The row kernels (block shapes the panels do not take) over the same executor.
  const bsr_matrix<S> small = prune_and_quantize_blocks<S>(w.data(), n, k, k, 4, 8, 0.25, {8});
  ASSERT_FALSE(small.vectorized());
  for (compute mode : {compute::weight_only, compute::int8})
    for (std::size_t m : {std::size_t(7), std::size_t(17)}) {  // 17: tokens in the lanes on every SIMD path
      std::vector<float> serial(m * n), threaded(m * n);
      gemm(matrix_view<const float>(x.data(), m, k), small, matrix_view<float>(serial.data(), m, n), {nullptr, mode});
      gemm(matrix_view<const float>(x.data(), m, k), small, matrix_view<float>(threaded.data(), m, n), {nullptr, mode}, pool);
      EXPECT_EQ(serial, threaded) << "4x8 blocks, m=" << m;
    }
  std::vector<float> y(7 * n);
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 7, k - 1), b, matrix_view<float>(y.data(), 7, n)), lowbit::error);
  // SmoothQuant channel scales must be positive and finite.
  for (const float bad : {0.0f, -1.0f, NAN, INFINITY}) {
    std::vector<float> channel(k, 1.0f);
    channel[5] = bad;
    EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 7, k), b, matrix_view<float>(y.data(), 7, n),
                      {nullptr, compute::int8, channel.data()}),
                 lowbit::error)
        << bad;
  }
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 7, k), bsr_matrix<S>(), matrix_view<float>(y.data(), 7, n)),
               lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
