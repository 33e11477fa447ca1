// Lists of schemes that tests iterate over with typed tests, and small helpers they share.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "lowbit/scheme.hpp"

namespace lowbit_test {

using namespace lowbit;

// Every element format once with float scales, plus the other scale types and zero points.
using all_schemes = ::testing::Types<
    scheme<int4>, scheme<uint4, float, true>, scheme<int8>, scheme<uint8, float, true>, scheme<fp8_e4m3>,
    scheme<fp8_e5m2>, scheme<fp6_e3m2>, scheme<fp6_e2m3>, scheme<fp4_e2m1>, scheme<nf4>, scheme<sf4>,
    scheme<iq4_nl, fp16>, scheme<mxint8>, scheme<mxint4>, scheme<int4, fp16>, scheme<nf4, bf16>,
    scheme<uint4, bf16, true>, scheme<int8, e8m0>, mx::fp4, mx::fp8_e4m3, mx::fp8_e5m2, mx::fp6_e3m2, mx::fp6_e2m3,
    mx::int8, mx::int4>;

// One scheme per decoding path (4-bit tables with and without zero points, 8-bit integers, FP8,
// 6-bit, codebooks with 16-bit scales, MX): for kernels that reuse the dense decoders, which
// all_schemes covers already, and whose own logic does not depend on the format.
using path_schemes = ::testing::Types<scheme<int4>, scheme<uint4, float, true>, scheme<int8>, scheme<fp8_e4m3>,
                                      scheme<fp6_e3m2>, scheme<nf4, bf16>, scheme<iq4_nl, fp16>, mx::fp4, mx::int8>;

// The kernel test binary is built twice in CI: GCC Release runs the full cross products above;
// the sanitizer build (LOWBIT_TEST_SANITIZED, whose compile time is the CI's longest phase) runs
// the kernels whose logic does not depend on the scale type over one scheme per decoding path,
// and the format x scale type x zero point products over a covering subset (every format, every
// scale type with and without zero points), still on every ISA path.
#ifdef LOWBIT_TEST_SANITIZED
using gemm_schemes = path_schemes;
#else
using gemm_schemes = all_schemes;
#endif

inline std::vector<float> random_matrix(std::size_t rows, std::size_t cols, uint32_t seed, float spread = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> w(rows * cols);
  for (auto& v : w) v = normal(rng);
  return w;
}

}  // namespace lowbit_test
