// The fp32 baseline through OpenBLAS's sgemm, when the example is built with it (CMake finds
// Debian's libopenblas-dev, which scripts/deps.sh installs): a fair fp32 reference for the
// speedups, since lowbit has no fp32 weight format and fp32_linear is plain loops.
#pragma once

#if defined(MINILM_HAVE_OPENBLAS)
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "bert.hpp"

extern "C" void openblas_set_num_threads(int);

namespace minilm {

/// y = x Wᵀ + b with cblas_sgemm on W as the checkpoint stores it (out x in, row-major), on the
/// same threads as lowbit: the outputs are split over the pool and each thread runs a
/// single-threaded sgemm on its slice of W's rows (minilm calls openblas_set_num_threads(1)).
/// OpenBLAS's own threads spin while they wait, and beside lowbit's pool they would fight for the
/// same cores: this keeps one busy thread per core, as the lowbit path has.
class blas_linear final : public linear {
 public:
  explicit blas_linear(const dense_linear& w) : out_(w.out), in_(w.in), w_(w.weight), bias_(w.bias) {}
  void forward(lowbit::matrix_view<const float> x, lowbit::matrix_view<float> y, lowbit::thread_pool& pool) const override {
    constexpr std::size_t step = 64;  // outputs per slice: whole cache lines of y
    pool((out_ + step - 1) / step, [&](std::size_t begin, std::size_t end) {
      const std::size_t n0 = begin * step, n1 = std::min(out_, end * step);
      for (std::size_t i = 0; i < x.rows; ++i) std::copy(bias_.begin() + n0, bias_.begin() + n1, y.data + i * y.ld + n0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(x.rows), static_cast<int>(n1 - n0),
                  static_cast<int>(in_), 1.0f, x.data, static_cast<int>(x.ld), w_.data() + n0 * in_, static_cast<int>(in_), 1.0f,
                  y.data + n0, static_cast<int>(y.ld));
    });
  }
  std::size_t weight_bytes() const override { return w_.size() * sizeof(float); }

 private:
  std::size_t out_, in_;
  std::vector<float> w_, bias_;
};

}  // namespace minilm
#endif
