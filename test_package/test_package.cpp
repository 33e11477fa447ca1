// The Conan package's smoke test: quantize a small matrix to int4 and read it back, an FP8 round trip.
#include <lowbit/kernels/reference/dequantize.hpp>
#include <lowbit/lowbit.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  std::vector<float> w(2 * 32);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.5f * float(i));
  const auto q = lowbit::quantize_rtn<lowbit::scheme<lowbit::int4, lowbit::fp16>>(w.data(), 2, 32, 32,
                                                                                   lowbit::quant_options{32});
  float worst = 0.0f;
  for (std::size_t r = 0; r < 2; ++r)
    for (std::size_t k = 0; k < 32; ++k)
      worst = std::fmax(worst, std::fabs(lowbit::reference::dequantize_element(q.view(), r, k) - w[r * 32 + k]));
  // One int4 step of a group whose absmax is <= 1 (rounding, or the clamp at +absmax when the
  // extreme is negative), and an exact FP8 value.
  const bool ok = worst <= 1.0f / 7.0f * 1.01f && float(lowbit::fp8_e4m3(1.5f)) == 1.5f;
  std::printf("lowbit %d.%d.%d from Conan: %s (int4 worst error %.4f)\n", LOWBIT_VERSION_MAJOR, LOWBIT_VERSION_MINOR,
              LOWBIT_VERSION_PATCH, ok ? "ok" : "FAILED", worst);
  return ok ? 0 : 1;
}
