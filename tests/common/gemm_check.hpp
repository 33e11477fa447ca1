// The check that every sparse kernel test makes: y = x · Wᵀ + bias through lowbit::gemm on every
// ISA path this machine runs, each against the float64 reference on W's dense form.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "lowbit/arch/dispatch.hpp"
#include "lowbit/core/parallel.hpp"
#include "lowbit/kernels/gemm.hpp"
#include "lowbit/kernels/reference/gemm.hpp"

namespace lowbit_test {

// `dense` is w as a dense row-major n x k matrix (its to_dense); `what` names the case in a
// failure. Each output is within 1e-5 of the sum of its terms' magnitudes. The gemm overload for
// w's type (sparse, BSR...) is found by argument-dependent lookup: the caller includes its header.
template <class Matrix>
void expect_gemm_matches_dense_on_every_path(const std::vector<float>& x, const Matrix& w,
                                             const std::vector<float>& dense, const std::vector<float>& bias,
                                             std::size_t m, std::size_t n, std::size_t k, const std::string& what) {
  using namespace lowbit;
  const reference::gemm_result ref = reference::gemm(matrix_view<const float>(x.data(), m, k),
                                                     matrix_view<const float>(dense.data(), n, k), bias.data());
  for (isa path : supported_isas()) {
    std::vector<float> y(m * n, -1.0f);
    gemm(matrix_view<const float>(x.data(), m, k), w, matrix_view<float>(y.data(), m, n), gemm_options{bias.data()},
         serial_executor{}, path);
    for (std::size_t i = 0; i < y.size(); ++i)
      ASSERT_LE(std::fabs(static_cast<double>(y[i]) - ref.y[i]), 1e-5 * ref.magnitude[i] + 1e-30)
          << what << " " << isa_name(path) << " m=" << m << " n=" << n << " k=" << k << " output " << i << " = " << y[i]
          << ", reference " << ref.y[i];
  }
}

}  // namespace lowbit_test
