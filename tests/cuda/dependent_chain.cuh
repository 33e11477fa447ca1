// A chain of M <= 16 GEMMs launched as programmatic dependents (gemm_options::dependent_launch),
// for test_cuda.cu and test_cuda_sparse24.cu. Each round: a slow kernel rewrites x from y3 (the
// last round's output), then y1 = x · W0ᵀ, y2 = y1 · W1ᵀ, y3 = y2 · W2ᵀ, every kernel a dependent of
// the one before, each of which lets the next start at once: a GEMM that read its input (or wrote
// its output) before its griddepcontrol.wait would see the old x (the rewrite spins ~20 µs first)
// or an unfinished y, and the chain's outputs would differ from the same chain launched plainly.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "act_types.cuh"
#include "lowbit/cuda.cuh"

namespace lowbit_test {

template <class T>
__device__ float device_float(T v) {
  if constexpr (std::is_same<T, __half>::value) return __half2float(v);
  else return __bfloat162float(v);
}

/// x[r][c] = base[r][c] * s + y3[r][c % n1] / 2 for r < m, c < k, after a spin of `spin` clock
/// cycles; it lets the next kernel start at once, and waits for the previous one (which may read x
/// and writes y3) before it spins.
template <class T>
__global__ void rewrite_x_kernel(T* x, const T* base, const T* y3, int m, int k, int n1, float s, long long spin) {
  lowbit::cuda::detail::grid_dependents_launch();
  lowbit::cuda::detail::grid_dependency_wait();
  const long long start = clock64();
  while (clock64() - start < spin) {
  }
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < m * k; i += gridDim.x * blockDim.x) {
    const int r = i / k, c = i % k;
    const float v = device_float(base[i]) * s + 0.5f * device_float(y3[r * n1 + c % n1]);
    if constexpr (std::is_same<T, __half>::value) x[i] = __float2half(v);
    else x[i] = __float2bfloat16(v);
  }
}

/// The chain's buffers after its last round, on the host: x (m x k), y1 (m x n1), y2 (m x n2), y3
/// (m x n1), rows dense.
template <class T>
struct chain_result {
  std::vector<T> x, y1, y2, y3;
  bool operator==(const chain_result& o) const {
    const auto same = [](const std::vector<T>& a, const std::vector<T>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
    };
    return same(x, o.x) && same(y1, o.y1) && same(y2, o.y2) && same(y3, o.y3);
  }
};

/// `rounds` rounds of the chain on the default stream; gemm(j, in, out, dependent) computes out =
/// in · W_jᵀ (W0: n1 x k, W1: n2 x n1, W2: n1 x n2; rows dense) with gemm_options::dependent_launch
/// = dependent; the rewrite kernel is a dependent too where `dependent`.
template <class T, class Gemm>
chain_result<T> run_chain(Gemm&& gemm, std::size_t m, std::size_t k, std::size_t n1, std::size_t n2, int rounds, bool dependent,
                          unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<T> base(m * k), zeros(m * n1, to_act<T>(0.0f));
  for (T& v : base) v = to_act<T>(normal(rng));
  T *d_base = nullptr, *x = nullptr, *y1 = nullptr, *y2 = nullptr, *y3 = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&d_base, m * k * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&x, m * k * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&y1, m * n1 * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&y2, m * n2 * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&y3, m * n1 * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(d_base, base.data(), m * k * sizeof(T), cudaMemcpyHostToDevice));
  LOWBIT_CUDA_CHECK(cudaMemcpy(y3, zeros.data(), m * n1 * sizeof(T), cudaMemcpyHostToDevice));
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  for (int r = 0; r < rounds; ++r) {
    const float s = 0.25f * static_cast<float>(r % 5 + 1);
    lowbit::cuda::detail::launch_kernel(rewrite_x_kernel<T>, dim3(8), dim3(256), 0, nullptr, dependent, 0, x,
                                        static_cast<const T*>(d_base), static_cast<const T*>(y3), static_cast<int>(m),
                                        static_cast<int>(k), static_cast<int>(n1), s, 40000ll);
    gemm(0, static_cast<const T*>(x), y1, dependent);
    gemm(1, static_cast<const T*>(y1), y2, dependent);
    gemm(2, static_cast<const T*>(y2), y3, dependent);
  }
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  chain_result<T> out{std::vector<T>(m * k), std::vector<T>(m * n1), std::vector<T>(m * n2), std::vector<T>(m * n1)};
  LOWBIT_CUDA_CHECK(cudaMemcpy(out.x.data(), x, m * k * sizeof(T), cudaMemcpyDeviceToHost));
  LOWBIT_CUDA_CHECK(cudaMemcpy(out.y1.data(), y1, m * n1 * sizeof(T), cudaMemcpyDeviceToHost));
  LOWBIT_CUDA_CHECK(cudaMemcpy(out.y2.data(), y2, m * n2 * sizeof(T), cudaMemcpyDeviceToHost));
  LOWBIT_CUDA_CHECK(cudaMemcpy(out.y3.data(), y3, m * n1 * sizeof(T), cudaMemcpyDeviceToHost));
  cudaFree(d_base);
  cudaFree(x);
  cudaFree(y1);
  cudaFree(y2);
  cudaFree(y3);
  return out;
}

/// One chain case's verdict, printed: false where `bad` outputs are off the
/// reference or the chain is not bit-equal to the plain one (`same`); `what` names the case.
inline bool chain_passed(const char* what, unsigned seed, bool same, int bad, double worst) {
  if (bad || !same) {
    std::printf("FAIL chain %s seed=%u: %s, %d outputs off the reference\n", what, seed,
                same ? "equal to the plain chain" : "NOT equal to the plain chain", bad);
    return false;
  }
  std::printf("ok   chain %s  bit-equal to the plain chain, worst err/tol %.3f\n", what, worst);
  return true;
}

}  // namespace lowbit_test
