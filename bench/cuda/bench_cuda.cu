// Times lowbit::cuda::gemm against cuBLAS fp16 (cublasGemmEx, fp32 compute) on the same shapes:
// y[M x N] = x[M x K] · Wᵀ for N x K = 8192 x 8192 and 4096 x 14336, M = 1, 4, 16, 32, 64, every GPU
// format (M = 32, 64: the split-K kernel, with a reused gemm_workspace, and with other splits); and with bf16 activations against cuBLAS bf16 (N = K = 8192, the default block shape).
// CUDA events around 200 launches, median of 7 such runs. The packed weights (~34 MB at 4
// bits) would fit in the H100's 50 MB L2, so launches rotate over copies totalling > 200 MB: the
// numbers are HBM streaming, not L2 hits. Also prints the device's copy bandwidth (bytes read +
// written) as the ceiling. Usage: bench_cuda [--quick] [--int4] (--int4: only uint4 + zero points
// with fp16 activations, beside cuBLAS fp16) [--large] (only the M > 64 table below) [--pdl] (only
// int4 + zero points at M = 1 and 16 standalone and in a chain of programmatic dependent launches).
// M > 64 (the tiled kernel, gemm_large.cuh): M = 128 .. 4096 at N x K = 8192 x 8192, 4096 x 14336 and
// 14336 x 4096, uint4 + zero points g128 against cuBLAS fp16 (TFLOP/s and ratio), NF4 / FP4 / MXFP4 /
// int8 / FP8 E4M3 at two sizes, bf16 activations against cuBLAS bf16; beside the default (on sm_90a
// the wgmma kernel, gemm_wgmma.cuh) the wgmma kernel with 128 and 256 tokens a block and the
// mma.sync kernel (8 warps) in the same run. 20 warm-up launches, median of 5 runs of 20 (the default
// and cuBLAS in alternating rounds: the board's power cap); the weights are not rotated (at these
// M every weight is read by many blocks anyway).
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "lowbit/cuda.cuh"
#include "timing.cuh"

namespace {

int iterations = 200, repeats = 7;

template <class F>
double time_us(F&& launch) {  // with this benchmark's iterations and repeats (bench/cuda/timing.cuh)
  return bench_cuda::time_us(launch, iterations, repeats, 20);
}

template <class T = __half>
T* device_random_half(std::size_t count, std::mt19937& rng, float scale) {
  std::vector<T> h(count);
  std::normal_distribution<float> normal(0.0f, scale);
  for (auto& v : h) {
    if constexpr (std::is_same<T, __half>::value) v = __float2half(normal(rng));
    else v = __float2bfloat16(normal(rng));
  }
  T* d = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&d, count * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(d, h.data(), count * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

struct shape {
  std::size_t n, k;
};
const std::size_t ms[] = {1, 4, 16, 32, 64};
constexpr std::size_t n_ms = sizeof(ms) / sizeof(ms[0]), max_m = 64;

struct result_row {
  std::string format;
  shape s;
  std::size_t m;
  // M <= 16: default; 1 and 2 tiles a block x 8 and 16 warps; 4 tiles x 16 and 8 warps.
  // M > 16: default (a reused workspace); the default without a workspace; 16 warps (1 tile each);
  // 8 splits with 8 / 16 warps; 2 splits, 1 (8 warps).
  double us[7], cublas_us, bytes;
};
std::vector<result_row> results;
std::vector<double> cublas_times, cublas_bf16_times;  // [shape][m], [m]

/// Random packed weights of a scheme: random codes, scales and zero points (the kernels' speed does
/// not depend on how they were chosen).
template <class Scheme>
lowbit::cuda::packed_weights<Scheme> random_packed(const shape& s, std::mt19937& rng) {
  constexpr bool mx = lowbit::cuda::gpu_scheme<Scheme>::mx;
  lowbit::quantized_matrix<Scheme> q(s.n, s.k, mx ? 32 : 128);
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::size_t i = 0; i < s.n * q.row_bytes(); ++i) q.codes()[i] = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.01f);
  const std::size_t groups = s.n * q.groups_per_row();
  for (std::size_t i = 0; i < groups; ++i) {
    if constexpr (mx) q.scales()[i] = lowbit::e8m0::from_bits(static_cast<uint8_t>(115 + byte(rng) % 8));
    else q.scales()[i] = lowbit::fp16(scale(rng));
  }
  if constexpr (Scheme::has_zero)
    for (std::size_t i = 0; i < groups; ++i) q.zeros()[i] = static_cast<uint8_t>(byte(rng) & ((1 << Scheme::bits) - 1));
  return lowbit::cuda::pack(q.view());
}

/// Copies of `view` so that one round over them is > 200 MB (4x the L2), the first the original;
/// their buffers in `owned`.
template <class Scheme>
std::vector<lowbit::cuda::packed_view<Scheme>> rotation(const lowbit::cuda::packed_view<Scheme>& view, std::vector<void*>& owned) {
  const std::size_t copies = std::max<std::size_t>(2, (200u << 20) / view.bytes() + 1);
  std::vector<lowbit::cuda::packed_view<Scheme>> views(copies, view);
  for (std::size_t c = 1; c < copies; ++c) {
    void *codes = nullptr, *scales = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&codes, view.code_bytes()));
    LOWBIT_CUDA_CHECK(cudaMalloc(&scales, view.scale_bytes()));
    LOWBIT_CUDA_CHECK(cudaMemcpy(codes, view.codes, view.code_bytes(), cudaMemcpyDeviceToDevice));
    LOWBIT_CUDA_CHECK(cudaMemcpy(scales, view.scales, view.scale_bytes(), cudaMemcpyDeviceToDevice));
    views[c].codes = static_cast<const ::uint4*>(codes);
    views[c].scales = static_cast<const uint32_t*>(scales);
    owned.push_back(codes);
    owned.push_back(scales);
  }
  return views;
}

template <class Scheme, class T = __half>
void bench_format(const char* name, const shape& s, std::size_t shape_index, const T* x, T* y,
                  std::mt19937& rng) {
  constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  const auto packed = random_packed<Scheme>(s, rng);
  const auto view = packed.view();
  std::vector<void*> owned;
  const auto views = rotation(view, owned);
  const std::size_t copies = views.size();
  const std::size_t tiles = view.tiles();
  lowbit::cuda::gemm_workspace workspace;
  for (std::size_t mi = 0; mi < n_ms; ++mi) {
    const std::size_t m = ms[mi];
    result_row row{std::string(name) + (bf16 ? ", bf16" : ""), s, m, {0, 0, 0, 0, 0, 0, 0},
                   bf16 ? cublas_bf16_times[mi] : cublas_times[shape_index * n_ms + mi], double(view.bytes())};
    if (m > 16) {
      // M = 33..64: the default (sm_90a: the wgmma kernel, 64-token blocks) against the split-K
      // mma.sync kernel's default block shape (8 warps), printed together.
      if (m > 32 && !bf16) {
        lowbit::cuda::gemm_options wide;
        wide.workspace = &workspace;
        wide.warps = 8;
        const double wide_us = time_us([&](int i) { lowbit::cuda::gemm(x, m, s.k, views[i % copies], y, s.n, nullptr, wide); });
        lowbit::cuda::gemm_options defaults;
        defaults.workspace = &workspace;
        const double default_us = time_us([&](int i) { lowbit::cuda::gemm(x, m, s.k, views[i % copies], y, s.n, nullptr, defaults); });
        std::printf("%s %zu x %zu M=%zu: default %.1f us, mma.sync split-K kernel (8 warps) %.1f us\n", name, s.n, s.k, m,
                    default_us, wide_us);
      }
      for (int variant = 0; variant < (bf16 ? 1 : 7); ++variant) {
        // default; the default without a workspace; 16 warps; 8 splits with 8 / 16 warps; 2, 1 splits
        const int splits[7] = {0, 0, 0, 8, 8, 2, 1}, warps[7] = {0, 0, 16, 8, 16, 8, 8};
        lowbit::cuda::gemm_options options;
        options.workspace = variant == 1 ? nullptr : &workspace;
        options.split_k = splits[variant];
        options.warps = warps[variant];
        row.us[variant] = time_us([&](int i) {
          lowbit::cuda::gemm(x, m, s.k, views[i % copies], y, s.n, nullptr, options);
        });
      }
      results.push_back(row);
      continue;
    }
    for (int variant = 0; variant < (bf16 ? 1 : 7); ++variant) {
      const int per_block = variant == 0 ? 0 : variant >= 5 ? 4 : 1 + (variant - 1) % 2;
      if (tiles % (per_block ? per_block : 1)) continue;
      lowbit::cuda::gemm_options options;
      options.tiles_per_block = per_block;
      options.warps = variant == 0 ? 0 : variant == 6 ? 8 : variant >= 3 ? 16 : 8;
      row.us[variant] = time_us([&](int i) {
        lowbit::cuda::gemm(x, m, s.k, views[i % copies], y, s.n, nullptr, options);
      });
    }
    results.push_back(row);
  }
  for (void* p : owned) cudaFree(p);
}

/// --pdl: the M <= 16 default of int4 + zero points (g128), fp16, standalone and in a chain of
/// programmatic dependent launches (gemm_options::dependent_launch: each of the 200 launches may
/// start while the one before finishes), against cuBLAS fp16 (standalone), M = 1 and 16.
template <class CublasTime>
void bench_pdl(cublasHandle_t handle, std::mt19937& rng, CublasTime&& cublas_time) {
  namespace lb = lowbit;
  std::printf("\n| int4 (uint4+zero, g128), fp16 | N x K | M | default µs | PDL chain µs | cuBLAS fp16 µs | default vs cuBLAS | PDL chain vs cuBLAS |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const shape& s : {shape{8192, 8192}, shape{4096, 14336}}) {
    __half* w = device_random_half(s.n * s.k, rng, 0.02f);
    __half* x = device_random_half(16 * s.k, rng, 1.0f);
    __half* y = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, 16 * s.n * sizeof(__half)));
    const auto packed = random_packed<lb::scheme<lb::uint4, lb::fp16, true>>(s, rng);
    std::vector<void*> owned;
    const auto views = rotation(packed.view(), owned);
    for (std::size_t m : {1, 16}) {
      const double cublas = cublas_time(handle, s, m, w, x, y, CUDA_R_16F);
      const auto timed = [&](bool dependent) {
        lb::cuda::gemm_options options;
        options.dependent_launch = dependent;
        return time_us([&](int i) { lb::cuda::gemm(x, m, s.k, views[i % views.size()], y, s.n, nullptr, options); });
      };
      const double standalone = timed(false), chained = timed(true);
      std::printf("| | %zu x %zu | %zu | %.1f | %.1f | %.1f | %.2fx | %.2fx |\n", s.n, s.k, m, standalone, chained, cublas,
                  cublas / standalone, cublas / chained);
      std::fflush(stdout);
    }
    for (void* p : owned) cudaFree(p);
    cudaFree(w);
    cudaFree(x);
    cudaFree(y);
  }
}

/// M > 64: lowbit against cuBLAS at each M of the shape, one table row each.
template <class Scheme, class T>
void bench_large_format(const char* name, const shape& s, std::initializer_list<std::size_t> large_ms, cublasHandle_t handle,
                        std::mt19937& rng) {
  constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  const std::size_t max_rows = 4096;
  T* w = device_random_half<T>(s.n * s.k, rng, 0.02f);
  T* x = device_random_half<T>(max_rows * s.k, rng, 1.0f);
  T* y = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&y, max_rows * s.n * sizeof(T)));
  const auto packed = random_packed<Scheme>(s, rng);
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType type = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  for (std::size_t m : large_ms) {
    // The default and cuBLAS in alternating rounds: from M = 256 the H100 runs at its power cap, so
    // timings made one after the other depend on their order (bench_cuda::time_interleaved_us).
    const auto view = packed.view();
    const auto [us, cublas_us] = bench_cuda::time_interleaved_us(
        [&](int) { lowbit::cuda::gemm(x, m, s.k, view, y, s.n); },
        [&](int) {
          CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, w, type, int(s.k), x,
                                    type, int(s.k), &beta, y, type, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        },
        20, 5, 20);
    // The sm_90a wgmma kernel with 128 and 256 tokens a block (gemm_wgmma.cuh; -1: not on this
    // device or MXFP4) and the mma.sync kernel (options.warps = 8), in the same run.
    double wgmma_us[2] = {-1.0, -1.0};
    if constexpr (lowbit::cuda::gpu_scheme<Scheme>::kind != lowbit::cuda::dequant_kind::mxfp4) {
      if (lowbit::cuda::detail::wgmma_usable()) {
        const lowbit::cuda::gemm_options defaults;
        wgmma_us[0] = bench_cuda::time_us([&](int) {
          lowbit::cuda::detail::gemm_wgmma_with<128, 6>(x, int(m), int(s.k), view, y, int(s.n), nullptr, defaults);
        }, 20, 5, 20);
        wgmma_us[1] = bench_cuda::time_us([&](int) {
          lowbit::cuda::detail::gemm_wgmma_with<256, 5>(x, int(m), int(s.k), view, y, int(s.n), nullptr, defaults);
        }, 20, 5, 20);
      }
    }
    lowbit::cuda::gemm_options mma_sync;
    mma_sync.warps = 8;
    const double old_us = bench_cuda::time_us([&](int) { lowbit::cuda::gemm(x, m, s.k, view, y, s.n, nullptr, mma_sync); }, 20, 5, 20);
    const double flop = 2.0 * double(m) * double(s.n) * double(s.k);
    std::printf("| %s%s | %zu x %zu | %zu | %.1f | %.0f | %.1f | %.0f | %.2fx | %.1f | %.1f | %.1f (%.0f) |\n", name,
                bf16 ? ", bf16" : "", s.n, s.k, m, us, flop / us * 1e-6, cublas_us, flop / cublas_us * 1e-6, cublas_us / us,
                wgmma_us[0], wgmma_us[1], old_us, flop / old_us * 1e-6);
  }
  cudaFree(w);
  cudaFree(x);
  cudaFree(y);
}

/// M > 64 block shapes side by side (uint4 + zero points, fp16): 8 warps a block (the default) and 16.
void bench_large_shapes(const shape& s, std::initializer_list<std::size_t> large_ms, std::mt19937& rng) {
  using int4z = lowbit::scheme<lowbit::uint4, lowbit::fp16, true>;
  const std::size_t max_rows = 4096;
  __half* x = device_random_half(max_rows * s.k, rng, 1.0f);
  __half* y = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&y, max_rows * s.n * sizeof(__half)));
  const auto packed = random_packed<int4z>(s, rng);
  const auto view = packed.view();
  for (std::size_t m : large_ms) {
    double us[2];
    for (int v = 0; v < 2; ++v) {
      lowbit::cuda::gemm_options options;
      options.warps = v ? 16 : 8;
      us[v] = bench_cuda::time_us([&](int) { lowbit::cuda::gemm(x, m, s.k, view, y, s.n, nullptr, options); }, 20, 5, 20);
    }
    const double flop = 2.0 * double(m) * double(s.n) * double(s.k);
    std::printf("| int4 (uint4+zero, g128) | %zu x %zu | %zu | %.1f (%.0f) | %.1f (%.0f) |\n", s.n, s.k, m, us[0], flop / us[0] * 1e-6,
                us[1], flop / us[1] * 1e-6);
  }
  cudaFree(x);
  cudaFree(y);
}

void bench_large(cublasHandle_t handle, std::mt19937& rng) {
  std::printf("\n| M > 64 block shape, µs (TFLOP/s) | N x K | M | 128 x 128, 8 warps | 16 warps |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  bench_large_shapes({8192, 8192}, {256, 1024, 4096}, rng);
  bench_large_shapes({4096, 14336}, {1024}, rng);
  namespace lb = lowbit;
  std::printf("\n| format (M > 64) | N x K | M | lowbit µs | TFLOP/s | cuBLAS µs | cuBLAS TFLOP/s | speed-up | wgmma 128 µs | wgmma 256 µs | mma.sync µs (TFLOP/s) |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  const shape shapes[] = {{8192, 8192}, {4096, 14336}, {14336, 4096}};
  using int4z = lb::scheme<lb::uint4, lb::fp16, true>;
  for (const shape& s : shapes)
    bench_large_format<int4z, __half>("int4 (uint4+zero, g128)", s, {128, 256, 512, 1024, 2048, 4096}, handle, rng);
  bench_large_format<lb::scheme<lb::nf4, lb::fp16>, __half>("nf4 (g128)", shapes[0], {256, 2048}, handle, rng);
  bench_large_format<lb::scheme<lb::fp4_e2m1, lb::fp16>, __half>("fp4_e2m1 (g128)", shapes[0], {256, 2048}, handle, rng);
  bench_large_format<lb::mx::fp4, __half>("mxfp4", shapes[0], {256, 2048}, handle, rng);
  bench_large_format<lb::scheme<lb::int8, lb::fp16>, __half>("int8 (g128)", shapes[0], {256, 2048}, handle, rng);
  bench_large_format<lb::scheme<lb::fp8_e4m3, lb::fp16>, __half>("fp8_e4m3 (g128)", shapes[0], {256, 2048}, handle, rng);
  bench_large_format<int4z, __nv_bfloat16>("int4 (uint4+zero, g128)", shapes[0], {128, 256, 1024, 4096}, handle, rng);
  bench_large_format<lb::scheme<lb::nf4, lb::fp16>, __nv_bfloat16>("nf4 (g128)", shapes[0], {256, 2048}, handle, rng);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, int4_only = false, large_only = false, pdl_only = false;
  for (int i = 1; i < argc; ++i) {
    pdl_only = pdl_only || std::strcmp(argv[i], "--pdl") == 0;
    large_only = large_only || std::strcmp(argv[i], "--large") == 0;
    quick = quick || std::strcmp(argv[i], "--quick") == 0;
    int4_only = int4_only || std::strcmp(argv[i], "--int4") == 0;
  }
  if (quick) iterations = 20, repeats = 3;
  cudaDeviceProp prop{};
  LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB, compute capability %d.%d\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, prop.major, prop.minor);

  // Ceiling: a 1 GiB device-to-device copy, bytes read + written.
  {
    const std::size_t bytes = std::size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&a, bytes));
    LOWBIT_CUDA_CHECK(cudaMalloc(&b, bytes));
    LOWBIT_CUDA_CHECK(cudaMemset(a, 1, bytes));
    const int saved = iterations;
    iterations = 10;
    const double us = time_us([&](int) { LOWBIT_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
    iterations = saved;
    std::printf("device-to-device copy: %.0f GB/s (bytes read + written)\n", 2.0 * bytes / us * 1e-3);
    cudaFree(a);
    cudaFree(b);
  }

  const shape shapes[] = {{8192, 8192}, {4096, 14336}};
  const auto cublas_time = [](cublasHandle_t handle, const shape& s, std::size_t m, const void* w, const void* x, void* y,
                              cudaDataType type) {
    const float alpha = 1.0f, beta = 0.0f;
    // Row-major y[m x n] = x · Wᵀ is column-major yᵀ[n x m] = W(as Kxn col-major)ᵀ · xᵀ.
    return time_us([&](int) {
      CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, w, type, int(s.k), x,
                                type, int(s.k), &beta, y, type, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
  };
  std::mt19937 rng(7);
  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  if (pdl_only) {
    bench_pdl(handle, rng, cublas_time);
    cublasDestroy(handle);
    return 0;
  }
  bench_large(handle, rng);
  if (large_only) {
    cublasDestroy(handle);
    return 0;
  }
  for (std::size_t si = 0; si < 2; ++si) {
    const shape& s = shapes[si];
    __half* w = device_random_half(s.n * s.k, rng, 0.02f);
    __half* x = device_random_half(max_m * s.k, rng, 1.0f);
    __half* y = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, max_m * s.n * sizeof(__half)));
    for (std::size_t m : ms) cublas_times.push_back(cublas_time(handle, s, m, w, x, y, CUDA_R_16F));
    cudaFree(w);
    namespace lb = lowbit;
    bench_format<lb::scheme<lb::uint4, lb::fp16, true>>("int4 (uint4+zero, g128)", s, si, x, y, rng);
    if (int4_only) {
      cudaFree(x);
      cudaFree(y);
      continue;
    }
    bench_format<lb::scheme<lb::int4, lb::fp16>>("int4 (sym, g128)", s, si, x, y, rng);
    bench_format<lb::scheme<lb::nf4, lb::fp16>>("nf4 (g128)", s, si, x, y, rng);
    bench_format<lb::scheme<lb::sf4, lb::fp16>>("sf4 (g128)", s, si, x, y, rng);
    bench_format<lb::scheme<lb::fp4_e2m1, lb::fp16>>("fp4_e2m1 (g128)", s, si, x, y, rng);
    bench_format<lb::scheme<lb::int8, lb::fp16>>("int8 (sym, g128)", s, si, x, y, rng);
    bench_format<lb::scheme<lb::fp8_e4m3, lb::fp16>>("fp8_e4m3 (g128)", s, si, x, y, rng);
    bench_format<lb::mx::fp4>("mxfp4 (E8M0 / 32)", s, si, x, y, rng);
    cudaFree(x);
    cudaFree(y);
  }
  if (!int4_only) {  // bf16 activations, N = K = 8192
    const shape& s = shapes[0];
    using bf = __nv_bfloat16;
    bf* w = device_random_half<bf>(s.n * s.k, rng, 0.02f);
    bf* x = device_random_half<bf>(max_m * s.k, rng, 1.0f);
    bf* y = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, max_m * s.n * sizeof(bf)));
    for (std::size_t m : ms) cublas_bf16_times.push_back(cublas_time(handle, s, m, w, x, y, CUDA_R_16BF));
    cudaFree(w);
    namespace lb = lowbit;
    bench_format<lb::scheme<lb::uint4, lb::fp16, true>, bf>("int4 (uint4+zero, g128)", s, 0, x, y, rng);
    bench_format<lb::scheme<lb::int4, lb::fp16>, bf>("int4 (sym, g128)", s, 0, x, y, rng);
    bench_format<lb::scheme<lb::nf4, lb::fp16>, bf>("nf4 (g128)", s, 0, x, y, rng);
    bench_format<lb::scheme<lb::sf4, lb::fp16>, bf>("sf4 (g128)", s, 0, x, y, rng);
    bench_format<lb::scheme<lb::fp4_e2m1, lb::fp16>, bf>("fp4_e2m1 (g128)", s, 0, x, y, rng);
    bench_format<lb::scheme<lb::int8, lb::fp16>, bf>("int8 (sym, g128)", s, 0, x, y, rng);
    bench_format<lb::scheme<lb::fp8_e4m3, lb::fp16>, bf>("fp8_e4m3 (g128)", s, 0, x, y, rng);
    bench_format<lb::mx::fp4, bf>("mxfp4 (E8M0 / 32)", s, 0, x, y, rng);
    cudaFree(x);
    cudaFree(y);
  }
  cublasDestroy(handle);

  std::printf("\n| format | N x K | M | lowbit µs | weight GB/s | cuBLAS fp16 (bf16) µs | speed-up | M <= 16: µs, 1 / 2 tiles a block, 8 warps; 16 warps; 4 tiles, 16 / 8 warps; M > 16: no workspace / 16 warps; 8 splits, 8 / 16 warps; 2 / 1 splits |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const result_row& r : results) {
    std::printf("| %s | %zu x %zu | %zu | %.1f | %.0f | %.1f | %.2fx | %.1f / %.1f; %.1f / %.1f; %.1f / %.1f |\n",
                r.format.c_str(), r.s.n, r.s.k, r.m, r.us[0], r.bytes / r.us[0] * 1e-3, r.cublas_us, r.cublas_us / r.us[0],
                r.us[1], r.us[2], r.us[3], r.us[4], r.us[5], r.us[6]);
  }
  return 0;
}
