// Dequantization of 8-bit formats (integers, MXINT8, FP8) x scale types x zero points on every ISA
// path, bit for bit against reference::dequantize_rows (FP8 NaN codes must give NaN on both sides).
#include <gtest/gtest.h>

#include "kernels/dequantize_test_util.hpp"

namespace {

using namespace lowbit;

template <class Scheme>
class Dequantize8 : public ::testing::Test {};

// Every 8-bit format x scale type x zero point; see tests/common/schemes.hpp for the sanitizer build's subset.
#ifndef LOWBIT_TEST_SANITIZED
using schemes_8bit = ::testing::Types<
    scheme<int8>, scheme<int8, fp16>, scheme<int8, bf16>, scheme<int8, e8m0>,                            //
    scheme<int8, float, true>, scheme<int8, fp16, true>, scheme<int8, bf16, true>, scheme<int8, e8m0, true>,  //
    scheme<uint8>, scheme<uint8, fp16>, scheme<uint8, bf16>, scheme<uint8, e8m0>,                        //
    scheme<uint8, float, true>, scheme<uint8, fp16, true>, scheme<uint8, bf16, true>, scheme<uint8, e8m0, true>,
    scheme<mxint8>, scheme<mxint8, fp16>, scheme<mxint8, bf16>, scheme<mxint8, e8m0>,          //
    scheme<fp8_e4m3>, scheme<fp8_e4m3, fp16>, scheme<fp8_e4m3, bf16>, scheme<fp8_e4m3, e8m0>,  //
    scheme<fp8_e5m2>, scheme<fp8_e5m2, fp16>, scheme<fp8_e5m2, bf16>, scheme<fp8_e5m2, e8m0>>;
#else
using schemes_8bit = ::testing::Types<
    scheme<int8>, scheme<int8, fp16>, scheme<int8, bf16>, scheme<int8, e8m0>,                                  //
    scheme<uint8, float, true>, scheme<uint8, fp16, true>, scheme<uint8, bf16, true>, scheme<uint8, e8m0, true>,  //
    scheme<mxint8, bf16>, scheme<fp8_e4m3, fp16>, scheme<fp8_e5m2, e8m0>>;
#endif
TYPED_TEST_SUITE(Dequantize8, schemes_8bit);

TYPED_TEST(Dequantize8, BitExactOnEveryPath) { lowbit_test::check_scheme<TypeParam>(2000); }

// Every code once per row: NaN, inf, subnormal and signed-zero codes all appear.
TEST(Dequantize8, EveryCodeEveryPath) {
  lowbit_test::check_all_paths<scheme<fp8_e4m3>, float>(2, 256 + 17, 32, 11, 0);
  lowbit_test::check_all_paths<scheme<fp8_e5m2>, float>(2, 256 + 17, 32, 12, 0);
  lowbit_test::check_all_paths<scheme<fp8_e5m2, bf16>, bf16>(2, 256 + 17, 32, 13, 0);
}

}  // namespace
