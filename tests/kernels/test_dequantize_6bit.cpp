// Dequantization of the 6-bit formats (FP6 E3M2 / E2M3, codes straddling bytes) x scale types on
// every ISA path, bit for bit against reference::dequantize_rows.
#include <gtest/gtest.h>

#include "kernels/dequantize_test_util.hpp"

namespace {

using namespace lowbit;

template <class Scheme>
class Dequantize6 : public ::testing::Test {};

// Both formats x every scale type; the sanitizer build (tests/common/schemes.hpp) each format and
// each scale type once.
#ifndef LOWBIT_TEST_SANITIZED
using schemes_6bit = ::testing::Types<scheme<fp6_e3m2>, scheme<fp6_e3m2, fp16>, scheme<fp6_e3m2, bf16>,
                                      scheme<fp6_e3m2, e8m0>, scheme<fp6_e2m3>, scheme<fp6_e2m3, fp16>,
                                      scheme<fp6_e2m3, bf16>, scheme<fp6_e2m3, e8m0>>;
#else
using schemes_6bit = ::testing::Types<scheme<fp6_e3m2>, scheme<fp6_e3m2, e8m0>, scheme<fp6_e2m3, fp16>, scheme<fp6_e2m3, bf16>>;
#endif
TYPED_TEST_SUITE(Dequantize6, schemes_6bit);

TYPED_TEST(Dequantize6, BitExactOnEveryPath) { lowbit_test::check_scheme<TypeParam>(3000); }

}  // namespace
