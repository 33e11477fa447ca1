// Dequantization: every 4-bit format x scale type x zero point on every ISA path the CPU has, bit
// for bit against reference::dequantize_rows; the checked entry's errors; executors; decode plans.
// (8-bit and 6-bit formats: test_dequantize_8bit.cpp, test_dequantize_6bit.cpp.)
#include <gtest/gtest.h>

#include <stdexcept>

#include "kernels/dequantize_test_util.hpp"
#include "lowbit/core/parallel.hpp"

namespace {

using namespace lowbit;

template <class Scheme>
class Dequantize4 : public ::testing::Test {};

// Every 4-bit format x scale type x zero point; see tests/common/schemes.hpp for the sanitizer build's subset.
#ifndef LOWBIT_TEST_SANITIZED
using schemes_4bit = ::testing::Types<
    scheme<int4>, scheme<int4, fp16>, scheme<int4, bf16>, scheme<int4, e8m0>,                            //
    scheme<int4, float, true>, scheme<int4, fp16, true>, scheme<int4, bf16, true>, scheme<int4, e8m0, true>,  //
    scheme<uint4>, scheme<uint4, fp16>, scheme<uint4, bf16>, scheme<uint4, e8m0>,                        //
    scheme<uint4, float, true>, scheme<uint4, fp16, true>, scheme<uint4, bf16, true>, scheme<uint4, e8m0, true>,
    scheme<fp4_e2m1>, scheme<fp4_e2m1, fp16>, scheme<fp4_e2m1, bf16>, scheme<fp4_e2m1, e8m0>,  //
    scheme<nf4>, scheme<nf4, fp16>, scheme<nf4, bf16>, scheme<nf4, e8m0>,                      //
    scheme<sf4>, scheme<sf4, fp16>, scheme<sf4, bf16>, scheme<sf4, e8m0>,                      //
    scheme<iq4_nl>, scheme<iq4_nl, fp16>, scheme<iq4_nl, bf16>, scheme<iq4_nl, e8m0>,          //
    scheme<mxint4>, scheme<mxint4, fp16>, scheme<mxint4, bf16>, scheme<mxint4, e8m0>>;
#else
using schemes_4bit = ::testing::Types<
    scheme<int4>, scheme<int4, fp16>, scheme<int4, bf16>, scheme<int4, e8m0>,                                  //
    scheme<uint4, float, true>, scheme<uint4, fp16, true>, scheme<uint4, bf16, true>, scheme<uint4, e8m0, true>,  //
    scheme<fp4_e2m1, fp16>, scheme<nf4, bf16>, scheme<sf4, e8m0>, scheme<iq4_nl>, scheme<mxint4, fp16>>;
#endif
TYPED_TEST_SUITE(Dequantize4, schemes_4bit);

TYPED_TEST(Dequantize4, BitExactOnEveryPath) { lowbit_test::check_scheme<TypeParam>(1000); }

TEST(DequantizePlan, FastPathsAreChosen) {
  using simd::decode_method;
  EXPECT_EQ(simd::decode_plan<int4>::method, decode_method::lut16);
  EXPECT_EQ(simd::decode_plan<nf4>::method, decode_method::lut16);
  EXPECT_EQ(simd::decode_plan<int8>::method, decode_method::int_widen);
  EXPECT_EQ(simd::decode_plan<uint8>::method, decode_method::int_widen);
  EXPECT_EQ(simd::decode_plan<mxint8>::method, decode_method::int_widen);
  EXPECT_EQ(simd::decode_plan<mxint8>::value.unit, 1.0f / 64);
  EXPECT_EQ(simd::decode_plan<fp8_e4m3>::method, decode_method::minifloat);
  EXPECT_EQ(simd::decode_plan<fp8_e4m3>::value.nan, simd::nan_rule::max_magnitude);
  EXPECT_EQ(simd::decode_plan<fp8_e4m3>::value.bias, 7);
  EXPECT_EQ(simd::decode_plan<fp8_e5m2>::method, decode_method::minifloat);
  EXPECT_EQ(simd::decode_plan<fp8_e5m2>::value.nan, simd::nan_rule::ieee);
  EXPECT_EQ(simd::decode_plan<fp6_e3m2>::method, decode_method::minifloat);
  EXPECT_EQ(simd::decode_plan<fp6_e3m2>::value.exponent_bits, 3);
  EXPECT_EQ(simd::decode_plan<fp6_e2m3>::method, decode_method::minifloat);
  EXPECT_EQ(simd::decode_plan<fp6_e2m3>::value.bias, 1);
}

// The checked entry: all executors, both output types, every path, against the reference.
TEST(Dequantize, CheckedEntryWithExecutors) {
  using S = scheme<nf4, fp16>;
  const auto q = lowbit_test::random_matrix<S>(37, 300, 64, 7);
  const std::size_t ld = 310;
  std::vector<float> expected(q.rows() * ld, lowbit_test::sentinel<float>());
  reference::dequantize_rows(q.view(), 0, q.rows(), expected.data(), ld);
  std::vector<bf16> expected16(q.rows() * ld, lowbit_test::sentinel<bf16>());
  reference::dequantize_rows(q.view(), 0, q.rows(), expected16.data(), ld);
  thread_pool pool(3);
  for (isa path : supported_isas()) {
    SCOPED_TRACE(isa_name(path));
    std::vector<float> out(q.rows() * ld, lowbit_test::sentinel<float>());
    dequantize(q.view(), out.data(), ld, serial_executor{}, path);
    EXPECT_EQ(lowbit_test::compare(out, expected, q.rows(), q.cols(), ld), "");
    std::fill(out.begin(), out.end(), lowbit_test::sentinel<float>());
    dequantize(q.view(), out.data(), out.size(), ld, pool, path, store_policy::streaming);
    EXPECT_EQ(lowbit_test::compare(out, expected, q.rows(), q.cols(), ld), "");
    std::vector<bf16> out16(q.rows() * ld, lowbit_test::sentinel<bf16>());
    dequantize(q.view(), out16.data(), ld, pool, path);
    EXPECT_EQ(lowbit_test::compare(out16, expected16, q.rows(), q.cols(), ld), "");
    // A user-supplied executor: any callable.
    std::vector<float> out2(q.rows() * ld, lowbit_test::sentinel<float>());
    int calls = 0;
    dequantize(
        q.view(), out2.data(), ld,
        [&](std::size_t n, auto&& f) {
          ++calls;
          for (std::size_t i = 0; i < n; ++i) f(i, i + 1);
        },
        path);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(lowbit_test::compare(out2, expected, q.rows(), q.cols(), ld), "");
  }
  // Default arguments: best ISA, serial; and the allocating form.
  std::vector<float> out(q.rows() * ld, lowbit_test::sentinel<float>());
  dequantize(q.view(), out.data(), ld);
  EXPECT_EQ(lowbit_test::compare(out, expected, q.rows(), q.cols(), ld), "");
  const aligned_buffer<float> dense = dequantize(q.view(), pool);
  for (std::size_t r = 0; r < q.rows(); ++r)
    for (std::size_t k = 0; k < q.cols(); ++k)
      ASSERT_EQ(lowbit_test::bits_of(dense[r * q.cols() + k]), lowbit_test::bits_of(expected[r * ld + k]));
}

// Forcing the path through best_isa() reaches the kernels too.
TEST(Dequantize, ForcedIsa) {
  using S = scheme<int4>;
  const auto q = lowbit_test::random_matrix<S>(3, 100, 32, 3);
  std::vector<float> expected(300), out(300);
  reference::dequantize_rows(q.view(), 0, 3, expected.data(), 100);
  for (isa path : supported_isas()) {
    scoped_isa forced(path);
    EXPECT_EQ(best_isa(), path);
    std::fill(out.begin(), out.end(), 0.0f);
    dequantize(q.view(), out.data(), 100);
    EXPECT_EQ(lowbit_test::compare(out, expected, 3, 100, 100), "") << isa_name(path);
  }
  EXPECT_THROW(force_isa(static_cast<isa>(17)), lowbit::error);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const lowbit::error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Dequantize, ErrorsNameTheArgument) {
  using S = scheme<int4>;
  const auto q = lowbit_test::random_matrix<S>(4, 40, 32, 1);
  std::vector<float> out(4 * 40);
  EXPECT_NE(error_of([&] { dequantize(q.view(), static_cast<float*>(nullptr), 40); }).find("out is null"),
            std::string::npos);
  EXPECT_NE(error_of([&] { dequantize(q.view(), out.data(), 39); }).find("ld_out=39 is smaller than cols=40"),
            std::string::npos);
  EXPECT_NE(error_of([&] { dequantize(q.view(), out.data(), out.size() - 1, 40); })
                .find("out holds 159 elements but rows=4, cols=40, ld_out=40 need 160"),
            std::string::npos);
  std::vector<float> wide(4 * 50);
  EXPECT_NE(error_of([&] { dequantize(q.view(), wide.data(), 189, 50); }).find("out holds 189 elements"),
            std::string::npos);
  EXPECT_NO_THROW(dequantize(q.view(), wide.data(), 190, 50));
  EXPECT_NO_THROW(dequantize(q.view(), out.data(), out.size(), 40));
  EXPECT_NE(error_of([&] { dequantize(q.view(), out.data(), 40, serial_executor{}, static_cast<isa>(9)); })
                .find("path is not available here"),
            std::string::npos);
  for (isa path : all_isas) {
    if (isa_supported(path)) continue;  // e.g. avx512 on an AVX2 machine
    EXPECT_NE(error_of([&] { dequantize(q.view(), out.data(), 40, serial_executor{}, path); }).find(isa_name(path)),
              std::string::npos);
  }
  quantized_view<S> broken = q.view();
  broken.codes = nullptr;
  EXPECT_NE(error_of([&] { dequantize(broken, out.data(), 40); }).find("codes is null"), std::string::npos);
  broken = q.view();
  broken.scales = nullptr;
  EXPECT_NE(error_of([&] { dequantize(broken, out.data(), 40); }).find("scales is null"), std::string::npos);
  broken = q.view();
  broken.shape.group_size = 0;
  EXPECT_NE(error_of([&] { dequantize(broken, out.data(), 40); }).find("group_size"), std::string::npos);
  using Z = scheme<uint4, float, true>;
  const auto qz = lowbit_test::random_matrix<Z>(2, 40, 32, 1);
  quantized_view<Z> no_zeros = qz.view();
  no_zeros.zeros = nullptr;
  EXPECT_NE(error_of([&] { dequantize(no_zeros, out.data(), 40); }).find("zeros is null"), std::string::npos);
  // An exception from inside an executor's chunk reaches the caller.
  thread_pool pool(2);
  EXPECT_THROW(dequantize(q.view(), out.data(), 40,
                          [&](std::size_t n, auto&& f) {
                            pool(n, [&](std::size_t b, std::size_t e) {
                              if (b > 0) throw std::runtime_error("chunk failed");
                              f(b, e);
                            });
                          }),
               std::runtime_error);
}

TEST(Dequantize, EmptyRowRangeWritesNothing) {
  using S = scheme<fp4_e2m1, e8m0>;
  const auto q = lowbit_test::random_matrix<S>(4, 64, 32, 2);
  float out[4] = {1, 2, 3, 4};
  for (isa path : supported_isas())
    dispatch(path, [&](auto tag) { dequantize_rows<decltype(tag)>(q.view(), 2, 2, out, 64); });
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[3], 4.0f);
}

}  // namespace
