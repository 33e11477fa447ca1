// Checks lowbit::cuda::gemm_sparse24 (2:4 + int4 on mma.sp) against a float64 product with the
// dense matrix the CPU sparse24_matrix stands for (sparse24_to_dense): M = 1, 3, 8, 9, 16, odd N,
// signed and unsigned-with-zero int4 and fp16 kept values (float, rounded to fp16 by the pack: the
// reference sees the float values, the 2^-11 rounding is inside the tolerance below), group sizes 64 / 128 kept values / whole row, every block
// shape (1, 2, 4 tiles a block; 8, 16 warps).
// Weights are pruned from random matrices by magnitude (prune24), so the positions are random.
// A plain checker (no GoogleTest on the GPU machine); exits non-zero on any failure.
//
// Tolerance per output, as the dense int4 test (the same argument: weights exact in fp16, fp32
// tensor-core sums, fp16 output): |y - ref| <= 2^-10 |ref| + 2^-10 sum_k |x_k w_k|.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "lowbit/cuda.cuh"
#include "lowbit/prune/prune24.hpp"
#include "lowbit/sparse/sparse24_quantize.hpp"

namespace {

int failures = 0, cases = 0;

template <class Scheme>
void check_case(const char* name, std::size_t n, std::size_t k, std::size_t group, std::size_t m, int per_block, int warps,
                unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(n * k);
  for (float& v : w) v = normal(rng) * 0.05f;
  const lowbit::sparse24_positions pos = lowbit::prune24(w.data(), n, k, k);
  lowbit::quant_options options;
  options.group_size = group;
  const auto sw = lowbit::quantize_sparse24<Scheme>(w.data(), n, k, k, pos, options);
  const std::vector<float> dense = lowbit::sparse24_to_dense(sw);
  const auto packed = lowbit::cuda::pack_sparse24(sw);

  const std::size_t ldx = k + 8, ldy = n + 3;
  std::vector<__half> xh(m * ldx, __float2half(0.0f));
  std::vector<float> x(m * k);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t c = 0; c < k; ++c) {
      xh[i * ldx + c] = __float2half(normal(rng));
      x[i * k + c] = __half2float(xh[i * ldx + c]);
    }
  __half *dx = nullptr, *dy = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&dx, xh.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&dy, m * ldy * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(dx, xh.data(), xh.size() * sizeof(__half), cudaMemcpyHostToDevice));
  LOWBIT_CUDA_CHECK(cudaMemset(dy, 0xFF, m * ldy * sizeof(__half)));  // NaN: unwritten outputs fail
  lowbit::cuda::gemm_options go;
  go.tiles_per_block = per_block;
  go.warps = warps;
  lowbit::cuda::gemm_sparse24(dx, m, ldx, packed.view(), dy, ldy, nullptr, go);
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<__half> y(m * ldy);
  LOWBIT_CUDA_CHECK(cudaMemcpy(y.data(), dy, y.size() * sizeof(__half), cudaMemcpyDeviceToHost));
  cudaFree(dx);
  cudaFree(dy);

  int bad = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double want = 0.0, magnitude = 0.0;
      for (std::size_t c = 0; c < k; ++c) {
        const double term = double(x[i * k + c]) * dense[j * k + c];
        want += term;
        magnitude += std::fabs(term);
      }
      const double got = __half2float(y[i * ldy + j]);
      const double tol = std::ldexp(1.0, -10) * (std::fabs(want) + magnitude), err = std::fabs(got - want);
      if (!(err <= tol)) {
        if (bad++ < 3)
          std::printf("  %s n=%zu k=%zu g=%zu m=%zu seed=%u: y(%zu, %zu) = %g, reference %g (tol %g)\n", name, n, k, group, m,
                      seed, i, j, got, want, tol);
      }
      if (std::isfinite(got)) worst = std::fmax(worst, err / tol);
    }
  ++cases;
  if (bad) {
    ++failures;
    std::printf("FAIL %s n=%zu k=%zu g=%zu m=%zu tiles/block=%d warps=%d seed=%u: %d of %zu outputs off\n", name, n, k, group, m,
                per_block, warps, seed, bad, m * n);
  } else {
    std::printf("ok   %-10s n=%5zu k=%5zu g=%5zu m=%2zu tiles/block=%d warps=%2d  worst err/tol %.3f\n", name, n, k, group, m,
                per_block, warps, worst);
  }
}

template <class Scheme>
void check_format(const char* name, unsigned& seed) {
  struct shape { std::size_t n, k, group; };
  const shape shapes[] = {{64, 256, 64}, {37, 384, 192}, {130, 512, 128}, {17, 1024, 64}, {256, 2048, 128}};
  for (const shape& s : shapes)
    for (std::size_t m : {1, 3, 8, 9, 16}) {
      check_case<Scheme>(name, s.n, s.k, s.group, m, 0, 0, seed++);  // the default block shape
      if (m == 1 || m == 16) {
        const std::size_t tiles = (s.n + 15) / 16;
        for (int warps : {8, 16}) {
          check_case<Scheme>(name, s.n, s.k, s.group, m, 1, warps, seed++);
          if (tiles % 2 == 0 && (warps == 8 || !lowbit::is_plain_value<Scheme>::value))
            check_case<Scheme>(name, s.n, s.k, s.group, m, 2, warps, seed++);
        }
        if (tiles % 4 == 0 && !lowbit::is_plain_value<Scheme>::value) {
          check_case<Scheme>(name, s.n, s.k, s.group, m, 4, 16, seed++);
          check_case<Scheme>(name, s.n, s.k, s.group, m, 4, 8, seed++);
        }
      }
    }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 20261126u;
  std::printf("lowbit CUDA 2:4 sparse gemm tests, seed %u\n", seed);
  namespace lb = lowbit;
  try {
    check_format<lb::scheme<lb::int4, lb::fp16>>("2:4+int4", seed);
    check_format<lb::scheme<lb::uint4, lb::fp16, true>>("2:4+uint4z", seed);
    check_format<float>("2:4+fp16", seed);  // float kept values, rounded to fp16 by pack_sparse24
    // Argument checks throw lowbit::error: K not a multiple of 128.
    bool threw = false;
    try {
      std::vector<float> w(16 * 192, 0.5f);
      const auto pos = lb::prune24(w.data(), 16, 192, 192);
      lb::quant_options o;
      o.group_size = 96;
      (void)lb::cuda::pack_sparse24(lb::quantize_sparse24<lb::scheme<lb::int4, lb::fp16>>(w.data(), 16, 192, 192, pos, o));
    } catch (const lb::error&) {
      threw = true;
    }
    ++cases;
    if (!threw) { ++failures; std::printf("FAIL K=192 was accepted\n"); }
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 2;
  }
  std::printf("%s: %d cases, %d failed\n", failures ? "FAILED" : "PASSED", cases, failures);
  return failures ? 1 : 0;
}
