// A linear layer y = x · Wᵀ + b with 4-bit weights: quantize once (GPTQ/AWQ-style int4, fp16 scales
// per 128 columns), repack into the kernels' panel layout, then run it for a decode step (M = 1)
// and a prefill batch (M = 64), weight-only and with int8 activations (W4A8), on two threads.
// Prints the error against the fp32 layer and the time of each call.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "lowbit/lowbit.hpp"

int main() {
  using scheme = lowbit::scheme<lowbit::int4, lowbit::fp16>;
  const std::size_t n = 2048, k = 4096, group_size = 128;

  // A float layer, as a checkpoint would hold it.
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> weights(n * k), bias(n);
  for (float& v : weights) v = normal(rng);
  for (float& v : bias) v = normal(rng);

  // Once, at load time: quantize (round to nearest) and repack.
  const lowbit::quantized_matrix<scheme> q =
      lowbit::quantize<scheme>(weights.data(), n, k, k, lowbit::quant_options{group_size});
  const lowbit::panel_matrix<scheme> w = lowbit::pack_panels(q.view());
  std::printf("weights: %zu x %zu fp32 %.1f MiB -> int4 + fp16 scales %.1f MiB (%.2f bits/weight); best path %s\n",
              n, k, n * k * 4.0 / (1 << 20), static_cast<double>(w.storage_bytes()) / (1 << 20),
              lowbit::bits_per_weight<scheme>(group_size), lowbit::isa_name(lowbit::best_isa()));

  lowbit::thread_pool pool(2);
  for (std::size_t m : {std::size_t(1), std::size_t(64)}) {
    std::normal_distribution<float> activation(0.0f, 1.0f);
    std::vector<float> x(m * k), y(m * n), exact(m * n);
    for (float& v : x) v = activation(rng);
    // The fp32 layer, for comparison.
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        double s = bias[j];
        for (std::size_t c = 0; c < k; ++c) s += double(x[i * k + c]) * weights[j * k + c];
        exact[i * n + j] = static_cast<float>(s);
      }
    for (lowbit::compute mode : {lowbit::compute::weight_only, lowbit::compute::int8}) {
      const lowbit::gemm_options options{bias.data(), mode};
      const lowbit::matrix_view<const float> xv(x.data(), m, k);
      const lowbit::matrix_view<float> yv(y.data(), m, n);
      lowbit::gemm(xv, w, yv, options, pool);  // warm up
      const auto start = std::chrono::steady_clock::now();
      const int calls = 20;
      for (int i = 0; i < calls; ++i) lowbit::gemm(xv, w, yv, options, pool);
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / calls;
      double error = 0, norm = 0;
      for (std::size_t i = 0; i < m * n; ++i) {
        error += (y[i] - exact[i]) * double(y[i] - exact[i]);
        norm += double(exact[i]) * exact[i];
      }
      std::printf("M=%-3zu %-11s %8.1f us  %6.1f GB/s of weights  %6.1f GOP/s  relative error %.4f\n", m,
                  mode == lowbit::compute::int8 ? "W4A8" : "weight-only", us, w.storage_bytes() / us * 1e-3,
                  2.0 * m * n * k / us * 1e-3, std::sqrt(error / norm));
    }
  }
}
