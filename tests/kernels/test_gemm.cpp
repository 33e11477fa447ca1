// The GEMM against the float64 references on every ISA path this CPU runs: weight-only for every
// scheme, the integer path (compute::int8) for every integer-valued one (bit-exact where its float
// steps are exact), bf16 activations, random and odd shapes (M = 1, 2, 3, 17, 64; N and K not
// multiples of anything), tails of panels, groups and chunks, executors (thread_pool, an engine's
// own, openmp_executor when built with OpenMP), and the errors that bad arguments raise.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "common/exact_int8.hpp"
#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/kernels/gemm.hpp"
#include "lowbit/kernels/reference/gemm.hpp"
#include "lowbit/layout/panel.hpp"
#include "lowbit/quant/quantize.hpp"

namespace lowbit_test {
namespace {

struct gemm_case {
  std::size_t m, n, k, group_size;  // group_size 0: per-channel
};

// Odd N (panel tails), K past the last whole chunk, groups with a short last one, M around the
// small-M / tiled switch and the register blocks; K past the kernels' K blocks (256 and 1024
// columns), with a per-channel group and groups of 96 cut by the block boundaries; M = 4 over an
// odd number of chunks with a short last group (the bf16 pair kernel's x tail).
const gemm_case cases[] = {{1, 37, 100, 32},  {2, 16, 64, 0},    {3, 50, 264, 64}, {17, 33, 96, 32},
                           {64, 20, 128, 128}, {5, 45, 300, 0}, {6, 20, 2100, 0}, {8, 18, 1500, 96},
                           {23, 75, 1100, 96}, {4, 35, 1000, 128}};

// The integer path also meets M >= 64 on VNNI, the decoded-tile kernel, on a whole and a partial
// block of 4 panels, groups of 96 cut by its 2048-column K blocks, M not a multiple of its 6 rows;
// and per-channel groups over two K blocks (a short last one) of packed x, a partial quad
// alone, 11 row blocks; a quad of 3 panels (its second pair half empty) with groups of 32 (a
// piece every 8 steps).
const gemm_case integer_cases[] = {{1, 37, 100, 32},  {2, 16, 64, 0},     {3, 50, 264, 64},
                                   {17, 33, 96, 32},  {64, 20, 128, 128}, {5, 45, 300, 0},
                                   {6, 20, 2100, 0},  {8, 18, 1500, 96},  {23, 75, 1100, 96},
                                   {64, 66, 2056, 96}, {65, 20, 2100, 0}, {66, 45, 520, 32}};

template <class Scheme>
const char* scheme_name_of() {
  return format_traits<typename Scheme::format>::name;
}

template <class Scheme>
std::size_t group_for(const gemm_case& c) {
  if (is_mx_scheme<Scheme>::value) return mx::block_size;
  return c.group_size == 0 ? c.k : c.group_size;
}

template <class Scheme>
quantized_matrix<Scheme> make_weights(const gemm_case& c, uint32_t seed) {
  const std::vector<float> w = random_matrix(c.n, c.k, seed);
  return quantize<Scheme>(w.data(), c.n, c.k, c.k, quant_options{group_for<Scheme>(c)});
}

void expect_close(const std::vector<float>& y, const reference::gemm_result& ref, double tolerance,
                  const std::string& what) {
  ASSERT_EQ(y.size(), ref.y.size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    const double error = std::fabs(static_cast<double>(y[i]) - ref.y[i]);
    if (!(error <= tolerance * ref.magnitude[i] + 1e-30)) {
      ADD_FAILURE() << what << ": output " << i << " = " << y[i] << ", reference " << ref.y[i]
                    << " (tolerance " << tolerance << " x " << ref.magnitude[i] << ")";
      return;
    }
  }
}

template <class Scheme>
class gemm_test : public ::testing::Test {};
TYPED_TEST_SUITE(gemm_test, gemm_schemes);

TYPED_TEST(gemm_test, weight_only_matches_reference_on_every_path) {
  using S = TypeParam;
  uint32_t seed = 100;
  for (const gemm_case& c : cases) {
    const quantized_matrix<S> q = make_weights<S>(c, ++seed);
    const panel_matrix<S> w = pack_panels(q.view());
    const std::vector<float> x = random_matrix(c.m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
    const reference::gemm_result ref = reference::gemm(matrix_view<const float>(x.data(), c.m, c.k), q.view(), bias.data());
    for (isa path : supported_isas()) {
      std::vector<float> y(c.m * c.n, -1.0f);
      gemm(matrix_view<const float>(x.data(), c.m, c.k), w, matrix_view<float>(y.data(), c.m, c.n),
           gemm_options{bias.data()}, serial_executor{}, path);
      expect_close(y, ref, 1e-5,
                   std::string(isa_name(path)) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                       " k=" + std::to_string(c.k) + " seed=" + std::to_string(seed));
    }
  }
}

TYPED_TEST(gemm_test, integer_path_matches_integer_reference_or_is_refused) {
  using S = TypeParam;
  uint32_t seed = 200;
  for (const gemm_case& c : integer_cases) {
    const quantized_matrix<S> q = make_weights<S>(c, ++seed);
    const panel_matrix<S> w = pack_panels(q.view());
    const std::vector<float> x = random_matrix(c.m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
    std::vector<float> y(c.m * c.n);
    const gemm_options int8{bias.data(), compute::int8};
    if constexpr (!has_integer_path<typename S::format>) {
      EXPECT_THROW(gemm(matrix_view<const float>(x.data(), c.m, c.k), w, matrix_view<float>(y.data(), c.m, c.n), int8),
                   lowbit::error);
      return;
    } else {
      int8_activations a;
      a.quantize(matrix_view<const float>(x.data(), c.m, c.k), w.shape().group_size);
      const reference::gemm_result ref = reference::gemm_int8(a, q.view(), bias.data());
      for (isa path : supported_isas()) {
        std::fill(y.begin(), y.end(), -1.0f);
        gemm(matrix_view<const float>(x.data(), c.m, c.k), w, matrix_view<float>(y.data(), c.m, c.n), int8,
             serial_executor{}, path);
        expect_close(y, ref, 1e-5, std::string(isa_name(path)) + " m=" + std::to_string(c.m) + " n=" +
                                       std::to_string(c.n) + " k=" + std::to_string(c.k));
      }
    }
  }
}

// Bit-exact on power-of-two scales (tests/common/exact_int8.hpp): every float step of the integer
// path is then exact, so y must equal the integer reference, on every path: M = 1 and 3 (one row
// at a time), 7 (register blocks), 65 (VNNI's tile kernel), K over one and two K blocks (pieces of
// groups summed in float); odd cases with SmoothQuant channel scales (powers of two: x / c exact).
const gemm_case exact_cases[] = {{1, 37, 300, 32}, {3, 50, 1100, 0}, {7, 33, 2100, 96}, {65, 20, 2100, 64}};

TYPED_TEST(gemm_test, integer_path_is_exact_on_power_of_two_scales) {
  using S = TypeParam;
  if constexpr (has_integer_path<typename S::format>) {
    uint32_t seed = 250;
    bool smooth = false;
    for (const gemm_case& c : exact_cases) {
      smooth = !smooth;
      quantized_matrix<S> q = make_weights<S>(c, ++seed);
      set_power_of_two_scales(q);
      const panel_matrix<S> w = pack_panels(q.view());
      const std::vector<float> channel = power_of_two_channel_scales(c.k), bias = exact_bias(c.n);
      const float* c_scales = smooth ? channel.data() : nullptr;
      const std::vector<float> x = exact_int8_rows(c.m, c.k, ++seed, c_scales);
      int8_activations a;
      a.quantize(matrix_view<const float>(x.data(), c.m, c.k), w.shape().group_size, c_scales);
      for (std::size_t i = 0; i < c.m; ++i) ASSERT_EQ(a.scale(i), std::ldexp(1.0f, int(i % 3) - 1)) << "row " << i;
      const reference::gemm_result ref = reference::gemm_int8(a, q.view(), bias.data());
      for (isa path : supported_isas()) {
        std::vector<float> y(c.m * c.n, -1.0f);
        gemm(matrix_view<const float>(x.data(), c.m, c.k), w, matrix_view<float>(y.data(), c.m, c.n),
             gemm_options{bias.data(), compute::int8, c_scales}, serial_executor{}, path);
        expect_exact(y, ref, c.n, integer_codes<typename S::format>::value.unit, [&](std::size_t i) { return a.scale(i); },
                     std::string(isa_name(path)) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                         " k=" + std::to_string(c.k) + (smooth ? " channel scales" : ""));
      }
    }
  }
}

// bf16 activations: vdpbf16ps on the avx512_vnni path for M > 4 (weights rounded to bf16: the
// documented 2^-8 relative bound), exact conversion to fp32 elsewhere (the fp32 bound).
template <class Scheme>
void check_bf16_activations() {
  uint32_t seed = 300;
  for (const gemm_case& c : cases) {
    const quantized_matrix<Scheme> q = make_weights<Scheme>(c, ++seed);
    const panel_matrix<Scheme> w = pack_panels(q.view());
    const std::vector<float> random = random_matrix(c.m, c.k, ++seed), bias = random_matrix(1, c.n, ++seed);
    std::vector<bf16> x(c.m * c.k);
    std::vector<float> x_float(c.m * c.k);
    for (std::size_t i = 0; i < x.size(); ++i) {
      x[i] = bf16(random[i]);
      x_float[i] = x[i].to_float();
    }
    const reference::gemm_result ref =
        reference::gemm(matrix_view<const float>(x_float.data(), c.m, c.k), q.view(), bias.data());
    for (isa path : supported_isas()) {
      std::vector<float> y(c.m * c.n, -1.0f);
      gemm(matrix_view<const bf16>(x.data(), c.m, c.k), w, matrix_view<float>(y.data(), c.m, c.n),
           gemm_options{bias.data()}, serial_executor{}, path);
      const bool dpbf16 = path == isa::avx512_vnni && c.m > 4;
      expect_close(y, ref, dpbf16 ? 1.0 / 256 : 1e-5,
                   std::string(scheme_name_of<Scheme>()) + " " + isa_name(path) + " m=" + std::to_string(c.m));
    }
  }
}

template <class... Schemes>
void check_bf16_activations_of() {
  (check_bf16_activations<Schemes>(), ...);
}

// Every element format (M = 1..4: the bf16 pair kernel's formats and the others; M > 4: the
// vdpbf16ps tile), FP8 / FP6 with float and E8M0 scales. The sanitizer build (compile time: its
// weight-only GEMMs are path_schemes') runs the formats of path_schemes and the first five.
TEST(gemm, bf16_activations_match_reference) {
  check_bf16_activations_of<scheme<int4, fp16>, scheme<uint4, float, true>, scheme<nf4>, mx::fp8_e4m3, scheme<int8>,
                            scheme<iq4_nl, fp16>, scheme<fp8_e4m3>, scheme<fp6_e3m2>, mx::fp4, mx::int8>();
#ifndef LOWBIT_TEST_SANITIZED
  check_bf16_activations_of<scheme<sf4>, scheme<fp4_e2m1>, scheme<fp8_e5m2>, mx::fp8_e5m2, mx::fp6_e2m3, mx::int4>();
#endif
}

// Threads split the panels; the result must not depend on how.
TEST(gemm, executors_give_the_serial_result) {
  using S = scheme<int4, fp16>;
  const gemm_case c{67, 300, 256, 64};  // M = 67: the many-row kernels (int8 on VNNI: x packed by the pool too)
  const quantized_matrix<S> q = make_weights<S>(c, 5);
  const panel_matrix<S> w = pack_panels(q.view());
  const std::vector<float> x = random_matrix(c.m, c.k, 6);
  thread_pool pool(3);
  // An engine's own pool as an executor: any callable exec(n, f) that calls f over ranges covering
  // [0, n) once and returns when they are done; here 3 chunks on threads of its own, the last first.
  const auto engine = [](std::size_t n, auto&& f) {
    std::vector<std::thread> threads;
    for (std::size_t chunk = 3; chunk-- > 1;) {
      const std::pair<std::size_t, std::size_t> r = chunk_range(n, 3, chunk);
      if (r.first < r.second) threads.emplace_back([&f, r] { f(r.first, r.second); });
    }
    const std::pair<std::size_t, std::size_t> r = chunk_range(n, 3, 0);
    if (r.first < r.second) f(r.first, r.second);
    for (std::thread& t : threads) t.join();
  };
  for (compute mode : {compute::weight_only, compute::int8}) {
    for (std::size_t m : {std::size_t(1), c.m}) {
      std::vector<float> serial(m * c.n), threaded(m * c.n, -1.0f), engined(m * c.n, -1.0f);
      gemm(matrix_view<const float>(x.data(), m, c.k), w, matrix_view<float>(serial.data(), m, c.n), {nullptr, mode});
      gemm(matrix_view<const float>(x.data(), m, c.k), w, matrix_view<float>(threaded.data(), m, c.n), {nullptr, mode},
           pool);
      EXPECT_EQ(serial, threaded) << "m=" << m;
      gemm(matrix_view<const float>(x.data(), m, c.k), w, matrix_view<float>(engined.data(), m, c.n), {nullptr, mode},
           engine);
      EXPECT_EQ(serial, engined) << "engine's executor, m=" << m;
#if defined(_OPENMP)
      std::vector<float> openmp(m * c.n, -1.0f);
      gemm(matrix_view<const float>(x.data(), m, c.k), w, matrix_view<float>(openmp.data(), m, c.n), {nullptr, mode},
           openmp_executor{3});
      EXPECT_EQ(serial, openmp) << "openmp_executor, m=" << m;
#endif
    }
  }
  // NF4 at M = 1: the fp32 kernel's 8-panel steps (19 panels: two full steps and a tail), and it
  // must match the reference too.
  using N = scheme<nf4>;
  const quantized_matrix<N> qn = make_weights<N>(c, 7);
  const panel_matrix<N> wn = pack_panels(qn.view());
  std::vector<float> serial(c.n), threaded(c.n);
  gemm(matrix_view<const float>(x.data(), 1, c.k), wn, matrix_view<float>(serial.data(), 1, c.n));
  gemm(matrix_view<const float>(x.data(), 1, c.k), wn, matrix_view<float>(threaded.data(), 1, c.n), {}, pool);
  EXPECT_EQ(serial, threaded);
  expect_close(serial, reference::gemm(matrix_view<const float>(x.data(), 1, c.k), qn.view()), 1e-5, "nf4 m=1");
}

// Strided views: only the M x N window of y is written, x is read through its ld.
TEST(gemm, leading_dimensions_are_honoured) {
  using S = scheme<nf4>;
  const gemm_case c{3, 40, 128, 64};
  const quantized_matrix<S> q = make_weights<S>(c, 8);
  const panel_matrix<S> w = pack_panels(q.view());
  const std::size_t ldx = c.k + 9, ldy = c.n + 5;
  const std::vector<float> x = random_matrix(c.m, ldx, 9);
  for (isa path : supported_isas()) {
    std::vector<float> y(c.m * ldy, 7.0f);
    gemm(matrix_view<const float>(x.data(), c.m, c.k, ldx), w, matrix_view<float>(y.data(), c.m, c.n, ldy), {},
         serial_executor{}, path);
    std::vector<float> dense(c.m * c.n);
    for (std::size_t i = 0; i < c.m; ++i)
      for (std::size_t j = 0; j < c.n; ++j) dense[i * c.n + j] = y[i * ldy + j];
    std::vector<float> xd(c.m * c.k);
    for (std::size_t i = 0; i < c.m; ++i)
      for (std::size_t j = 0; j < c.k; ++j) xd[i * c.k + j] = x[i * ldx + j];
    expect_close(dense, reference::gemm(matrix_view<const float>(xd.data(), c.m, c.k), q.view()), 1e-5, isa_name(path));
    for (std::size_t i = 0; i < c.m; ++i)
      for (std::size_t j = c.n; j < ldy; ++j) EXPECT_EQ(y[i * ldy + j], 7.0f) << isa_name(path);
  }
}

// Per-row int8 quantization, checked against its definition computed here independently.
TEST(int8_activations, rows_round_half_even_to_127_over_their_absmax) {
  const std::size_t m = 3, k = 37;
  std::vector<float> x = random_matrix(m, k, 11);
  x[5] = 0.0f;
  x[k + 3] = -4.0f;  // row 1's absmax, negative
  std::vector<float> c(k);
  for (std::size_t j = 0; j < k; ++j) c[j] = 0.5f + 0.05f * static_cast<float>(j);
  // Groups of whole quads (sums from the quad prefix sums) and not (summed per column).
  for (const std::size_t g : {std::size_t{16}, std::size_t{15}}) {
    for (const float* channel : {static_cast<const float*>(nullptr), static_cast<const float*>(c.data())}) {
      int8_activations a;
      a.quantize(matrix_view<const float>(x.data(), m, k), g, channel);
      ASSERT_EQ(a.padded_cols(), 40u);
      for (std::size_t i = 0; i < m; ++i) {
        double amax = 0;
        for (std::size_t j = 0; j < k; ++j)
          amax = std::max(amax, std::fabs(double(x[i * k + j]) / (channel ? channel[j] : 1.0)));
        EXPECT_FLOAT_EQ(a.scale(i), static_cast<float>(amax / 127.0));
        int32_t sums[3] = {};
        for (std::size_t j = 0; j < k; ++j) {
          const float v = (channel ? x[i * k + j] / channel[j] : x[i * k + j]) * (1.0f / a.scale(i));
          const int expected = static_cast<int>(std::nearbyint(v));
          EXPECT_EQ(a.row(i)[j], std::max(-127, std::min(127, expected))) << "row " << i << " col " << j;
          sums[j / g] += a.row(i)[j];
        }
        for (std::size_t j = k; j < a.padded_cols(); ++j) EXPECT_EQ(a.row(i)[j], 0);
        for (std::size_t gi = 0; gi < a.groups(); ++gi) EXPECT_EQ(a.group_sum(i, gi), sums[gi]);
        int32_t prefix = 0;
        for (std::size_t j = 0; j <= a.padded_cols() / 4; ++j) {
          EXPECT_EQ(a.quad_prefix(i)[j], prefix) << "row " << i << " quad " << j;
          for (std::size_t c4 = 4 * j; c4 < std::min(a.padded_cols(), 4 * j + 4); ++c4) prefix += a.row(i)[c4];
        }
      }
    }
  }
}

TEST(gemm, bad_arguments_raise_errors) {
  using S = scheme<int4>;
  const quantized_matrix<S> q = make_weights<S>({1, 32, 64, 32}, 12);
  const panel_matrix<S> w = pack_panels(q.view());
  std::vector<float> x(4 * 64), y(4 * 32);
  const matrix_view<const float> xv(x.data(), 4, 64);
  const matrix_view<float> yv(y.data(), 4, 32);
  EXPECT_NO_THROW(gemm(xv, w, yv));
  EXPECT_THROW(gemm(matrix_view<const float>(x.data(), 4, 63), w, yv), lowbit::error);    // K mismatch
  EXPECT_THROW(gemm(xv, w, matrix_view<float>(y.data(), 3, 32)), lowbit::error);         // M mismatch
  EXPECT_THROW(gemm(xv, w, matrix_view<float>(y.data(), 4, 31)), lowbit::error);         // N mismatch
  EXPECT_THROW(gemm(matrix_view<const float>(nullptr, 4, 64), w, yv), lowbit::error);    // null x
  EXPECT_THROW(gemm(xv, w, matrix_view<float>(y.data(), 4, 32, 16)), lowbit::error);     // ld < cols
  EXPECT_THROW(gemm(xv, panel_matrix<S>{}, yv), lowbit::error);                          // empty w
  float c[64] = {};
  EXPECT_THROW(gemm(xv, w, yv, {nullptr, compute::weight_only, c}), lowbit::error);      // channel scales w/o int8
  int8_activations a;
  a.quantize(xv, 16);
  EXPECT_THROW(gemm(a, w, yv), lowbit::error);                                           // group size mismatch
  const quantized_matrix<scheme<nf4>> qn = make_weights<scheme<nf4>>({1, 32, 64, 32}, 13);
  EXPECT_THROW(gemm(xv, pack_panels(qn.view()), yv, {nullptr, compute::int8}), lowbit::error);  // not integer
  for (isa path : {isa::sse42, isa::avx2, isa::avx512, isa::avx512_vnni}) {
    if (!isa_supported(path)) {
      EXPECT_THROW(gemm(xv, w, yv, {}, serial_executor{}, path), lowbit::error);
    }
  }
}

}  // namespace
}  // namespace lowbit_test
