// The checks every consumer project runs: they prove the consumer got lowbit's headers, its
// xsimd dependency and its C++17 requirement through lowbit::lowbit, and that the code works.
#pragma once

#include <lowbit/kernels/reference/dequantize.hpp>
#include <lowbit/lowbit.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

inline int run_lowbit_checks(const char* how) {
  int failures = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "[%s] FAILED: %s\n", how, what);
      ++failures;
    }
  };

  // int4 with an fp16 scale per group of 32: every weight comes back within one step (half a step
  // from rounding, or one step at the positive end when a negative extreme sets the scale to
  // absmax / 8 and +absmax clamps to code 7).
  constexpr std::size_t rows = 3, cols = 64, ld = 70;
  std::vector<float> w(rows * ld, 0.0f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < cols; ++k) w[r * ld + k] = std::sin(0.37f * float(r * cols + k)) * float(r + 1);
  const auto q = lowbit::quantize_rtn<lowbit::scheme<lowbit::int4, lowbit::fp16>>(w.data(), rows, cols, ld,
                                                                                   lowbit::quant_options{32});
  const auto view = q.view();
  double worst = 0.0;
  bool nonzero = false;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t k = 0; k < cols; ++k) {
      const std::size_t k0 = k / 32 * 32;
      float absmax = 0.0f;
      for (std::size_t j = k0; j < k0 + 32; ++j) absmax = std::max(absmax, std::fabs(w[r * ld + j]));
      const float back = lowbit::reference::dequantize_element(view, r, k);
      const double error = std::fabs(double(back) - w[r * ld + k]);
      // step <= absmax / 7; fp16 rounding of the scale adds < 0.1%.
      const double bound = absmax / 7.0 * 1.01 + 1e-6;
      worst = std::max(worst, error / bound);
      nonzero = nonzero || back != 0.0f;
    }
  }
  expect(worst <= 1.0, "int4 round trip within one quantization step");
  expect(nonzero, "int4 dequantized values are not all zero");

  // FP8 E4M3: 1.5 is exact, 1000 saturates to 448.
  expect(float(lowbit::fp8_e4m3(1.5f)) == 1.5f, "fp8_e4m3(1.5) round trip");
  expect(float(lowbit::fp8_e4m3(1000.0f)) == 448.0f, "fp8_e4m3 saturates at 448");

  // A bad shape raises lowbit::error with a message.
  bool thrown = false;
  try {
    (void)lowbit::quantize_rtn<lowbit::scheme<lowbit::int4, lowbit::fp16>>(w.data(), 0, cols, ld);
  } catch (const lowbit::error& e) {
    thrown = std::string(e.what()).find("rows=0") != std::string::npos;
  }
  expect(thrown, "quantize_rtn with rows=0 throws lowbit::error naming rows=0");

  std::printf("[%s] lowbit %d.%d.%d: %s (int4 worst error %.2f of the bound)\n", how, LOWBIT_VERSION_MAJOR,
              LOWBIT_VERSION_MINOR, LOWBIT_VERSION_PATCH, failures == 0 ? "all checks passed" : "FAILED", worst);
  return failures == 0 ? 0 : 1;
}
