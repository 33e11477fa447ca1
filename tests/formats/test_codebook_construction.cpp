// NF4 and SF4 tables recomputed from their construction (bitsandbytes' create_normal_map) in
// double precision: quantiles by bisection on the CDF, N(0,1) through std::erfc and Student-t
// with 5 degrees of freedom through its closed-form CDF.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "lowbit/formats/all.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// For odd nu the t CDF is closed form; nu = 5: 1/2 + (theta + sin cos (1 + 2/3 cos^2)) / pi.
double student_t5_cdf(double t) {
  const double theta = std::atan(t / std::sqrt(5.0));
  const double c = std::cos(theta);
  return 0.5 + (theta + std::sin(theta) * c * (1.0 + 2.0 / 3.0 * c * c)) / M_PI;
}

double quantile(double (*cdf)(double), double p) {
  double lo = -60, hi = 60;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (cdf(mid) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// torch.linspace(start, end, n) in float32: start + i*step for the first half, end - (n-1-i)*step after.
std::vector<double> linspace_f32(float start, float end, int n) {
  std::vector<double> out;
  const float step = (end - start) / static_cast<float>(n - 1);
  for (int i = 0; i < n; ++i)
    out.push_back(i < n / 2 ? start + static_cast<float>(i) * step : end - static_cast<float>(n - 1 - i) * step);
  return out;
}

std::vector<double> normal_map(double (*cdf)(double)) {
  const float offset = 0.9677083f;
  std::vector<double> v;
  const auto positive = linspace_f32(offset, 0.5f, 9), negative = linspace_f32(offset, 0.5f, 8);
  for (int i = 0; i < 8; ++i) v.push_back(quantile(cdf, positive[i]));
  for (int i = 0; i < 7; ++i) v.push_back(-quantile(cdf, negative[i]));
  v.push_back(0.0);
  double top = 0;
  for (double x : v) top = std::max(top, std::fabs(x));
  for (double& x : v) x /= top;
  std::sort(v.begin(), v.end());
  return v;
}

TEST(CodebookConstruction, Nf4IsTheNormalMap) {
  const auto table = normal_map(normal_cdf);
  for (int i = 0; i < 16; ++i)
    EXPECT_NEAR(format_traits<nf4>::codebook[i], table[i], 1e-7) << i;  // bitsandbytes' float32 values: 4.3e-8
}

TEST(CodebookConstruction, Sf4IsTheStudentT5Map) {
  const auto table = normal_map(student_t5_cdf);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(format_traits<sf4>::codebook[i], table[i], 1e-7) << i;
  // And it differs from NF4: heavier tails put the inner values closer to zero.
  EXPECT_LT(format_traits<sf4>::codebook[14], format_traits<nf4>::codebook[14] - 0.05f);
}

}  // namespace
}  // namespace lowbit_test
