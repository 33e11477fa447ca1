// Times lowbit::cuda::gemm_sparse24 (2:4 + int4 on mma.sp) against cuBLAS fp16 dense
// (cublasGemmEx, fp32 compute) and lowbit's dense int4 kernel (cuda::gemm, g128) on the same
// shapes: y[M x N] = x[M x K] · Wᵀ for N x K = 8192 x 8192 and 4096 x 14336, M = 1, 4, 16; and 2:4
// with fp16 kept values against the same cuBLAS figures.
// CUDA events around 200 launches, median of 7 runs; launches rotate over copies of the weights
// totalling > 200 MB (4x the H100's L2), so the numbers are HBM streaming. Usage: bench_cuda_sparse24 [--quick]
#include <cublas_v2.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/cuda.cuh"
#include "timing.cuh"

namespace {

int iterations = 200, repeats = 7;
struct half_row { std::size_t n, k, m; double us, cublas, bytes; };
std::vector<half_row> half_rows;

template <class F>
double time_us(F&& launch) {  // with this benchmark's iterations and repeats (bench/cuda/timing.cuh)
  return bench_cuda::time_us(launch, iterations, repeats, 20);
}

__half* device_random_half(std::size_t count, std::mt19937& rng, float scale) {
  std::vector<__half> h(count);
  std::normal_distribution<float> normal(0.0f, scale);
  for (auto& v : h) v = __float2half(normal(rng));
  __half* d = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&d, count * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(d, h.data(), count * sizeof(__half), cudaMemcpyHostToDevice));
  return d;
}

void* device_copy(const void* src, std::size_t bytes, std::vector<void*>& owned) {
  void* p = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&p, bytes));
  LOWBIT_CUDA_CHECK(cudaMemcpy(p, src, bytes, cudaMemcpyDeviceToDevice));
  owned.push_back(p);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--quick") == 0) iterations = 20, repeats = 3;
  cudaDeviceProp prop{};
  LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  namespace lb = lowbit;
  using sym4 = lb::scheme<lb::int4, lb::fp16>;
  struct shape { std::size_t n, k; };
  const shape shapes[] = {{8192, 8192}, {4096, 14336}};
  const std::size_t ms[] = {1, 4, 16};
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.01f);
  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  std::printf("\n| N x K | M | 2:4+int4 µs (default; 1 / 2 tiles, 8 warps; 1 / 2 tiles, 16 warps; 4 tiles, 16 / 8 warps) | weight GB/s | dense int4 µs | cuBLAS fp16 µs | vs cuBLAS | vs dense int4 |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const shape& s : shapes) {
    __half* w = device_random_half(s.n * s.k, rng, 0.02f);
    __half* x = device_random_half(16 * s.k, rng, 1.0f);
    __half* y = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, 16 * s.n * sizeof(__half)));
    // 2:4 with random codes, scales and positions (g64 kept values = 128 dense columns).
    const std::size_t kept = s.k / 2;
    lb::quantized_matrix<sym4> q(s.n, kept, 64);
    for (std::size_t i = 0; i < s.n * q.row_bytes(); ++i) q.codes()[i] = static_cast<uint8_t>(byte(rng));
    for (std::size_t i = 0; i < s.n * q.groups_per_row(); ++i) q.scales()[i] = lb::fp16(scale(rng));
    static const uint8_t pairs[6] = {0x4, 0x8, 0xc, 0x9, 0xd, 0xe};  // (a, b), a < b
    std::vector<uint8_t> nibbles(s.n * s.k / 8);
    for (uint8_t& b : nibbles) b = static_cast<uint8_t>(pairs[byte(rng) % 6] | (pairs[byte(rng) % 6] << 4));
    const lb::sparse24_matrix<sym4> sw(q.view(), nibbles.data(), s.k);
    const auto sp = lb::cuda::pack_sparse24(sw);
    // Dense int4 g128, random codes.
    lb::quantized_matrix<sym4> dq(s.n, s.k, 128);
    for (std::size_t i = 0; i < s.n * dq.row_bytes(); ++i) dq.codes()[i] = static_cast<uint8_t>(byte(rng));
    for (std::size_t i = 0; i < s.n * dq.groups_per_row(); ++i) dq.scales()[i] = lb::fp16(scale(rng));
    const auto dp = lb::cuda::pack(dq.view());
    // 2:4 with fp16 kept values (float, rounded by the pack), the same positions.
    std::vector<float> kept_f(s.n * kept);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& v : kept_f) v = normal(rng);
    const auto hp = lb::cuda::pack_sparse24(lb::sparse24_matrix<float>(kept_f.data(), s.n, kept, nibbles.data(), s.k));

    std::vector<void*> owned;
    const auto sv = sp.view();
    const std::size_t tiles = sv.tiles(), code_b = tiles * sv.chunks * 512, meta_b = tiles * sv.chunks * 256,
                      scale_b = tiles * sv.groups * 64;
    const std::size_t copies = (200u << 20) / sv.bytes() + 2;
    std::vector<lb::cuda::packed_sparse24_view<sym4>> svs(copies, sv);
    for (std::size_t c = 1; c < copies; ++c) {
      svs[c].codes = static_cast<const ::uint4*>(device_copy(sv.codes, code_b, owned));
      svs[c].metadata = static_cast<const ::uint4*>(device_copy(sv.metadata, meta_b, owned));
      svs[c].scales = static_cast<const uint32_t*>(device_copy(sv.scales, scale_b, owned));
    }
    const auto dv = dp.view();
    const std::size_t dcopies = (200u << 20) / dv.bytes() + 2;
    std::vector<lb::cuda::packed_view<sym4>> dvs(dcopies, dv);
    for (std::size_t c = 1; c < dcopies; ++c) {
      dvs[c].codes = static_cast<const ::uint4*>(device_copy(dv.codes, dv.code_bytes(), owned));
      dvs[c].scales = static_cast<const uint32_t*>(device_copy(dv.scales, dv.scale_bytes(), owned));
    }
    const auto hv = hp.view();
    const std::size_t hcopies = (200u << 20) / hv.bytes() + 2;
    std::vector<lb::cuda::packed_sparse24_view<float>> hvs(hcopies, hv);
    for (std::size_t c = 1; c < hcopies; ++c) {
      hvs[c].codes = static_cast<const ::uint4*>(device_copy(hv.codes, tiles * hv.chunks * 2048, owned));
      hvs[c].metadata = static_cast<const ::uint4*>(device_copy(hv.metadata, meta_b, owned));
    }
    for (std::size_t m : ms) {
      const float alpha = 1.0f, beta = 0.0f;
      const double cublas = time_us([&](int) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, w, CUDA_R_16F, int(s.k),
                                  x, CUDA_R_16F, int(s.k), &beta, y, CUDA_R_16F, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      // Block shapes: default; 1 / 2 tiles, 8 warps; 1 / 2 tiles, 16 warps; 4 tiles, 16 / 8 warps.
      const int shapes_tw[7][2] = {{0, 0}, {1, 8}, {2, 8}, {1, 16}, {2, 16}, {4, 16}, {4, 8}};
      double us[7] = {};
      for (int v = 0; v < 7; ++v) {
        if (sv.tiles() % (shapes_tw[v][0] ? shapes_tw[v][0] : 1)) continue;
        lb::cuda::gemm_options o;
        o.tiles_per_block = shapes_tw[v][0];
        o.warps = shapes_tw[v][1];
        us[v] = time_us([&](int i) { lb::cuda::gemm_sparse24(x, m, s.k, svs[i % copies], y, s.n, nullptr, o); });
      }
      const double dense = time_us([&](int i) { lb::cuda::gemm(x, m, s.k, dvs[i % dcopies], y, s.n); });
      const double half24 = time_us([&](int i) { lb::cuda::gemm_sparse24(x, m, s.k, hvs[i % hcopies], y, s.n); });
      half_rows.push_back({s.n, s.k, m, half24, cublas, double(hv.bytes())});
      std::printf("| %zu x %zu | %zu | %.1f (%.1f / %.1f; %.1f / %.1f; %.1f / %.1f) | %.0f | %.1f | %.1f | %.2fx | %.2fx |\n", s.n, s.k, m,
                  us[0], us[1], us[2], us[3], us[4], us[5], us[6],
                  sv.bytes() / us[0] * 1e-3, dense, cublas, cublas / us[0], dense / us[0]);
    }
    for (void* p : owned) cudaFree(p);
    cudaFree(w);
    cudaFree(x);
    cudaFree(y);
  }
  cublasDestroy(handle);
  std::printf("\n| N x K | M | 2:4 fp16 µs (default block shape) | weight GB/s | cuBLAS fp16 dense µs | vs cuBLAS |\n| --- | --- | --- | --- | --- | --- |\n");
  for (const half_row& r : half_rows)
    std::printf("| %zu x %zu | %zu | %.1f | %.0f | %.1f | %.2fx |\n", r.n, r.k, r.m, r.us, r.bytes / r.us * 1e-3, r.cublas, r.cublas / r.us);
  return 0;
}
