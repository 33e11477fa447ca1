// Times lowbit::cuda::gemm_sparse24 (2:4 on mma.sp) against cuBLAS dense (cublasGemmEx, fp32
// compute) with the same activations (fp16 or bf16) and lowbit's dense kernel of the same format
// (cuda::gemm, g128) on the same shapes: y[M x N] = x[M x K] · Wᵀ for N x K = 8192 x 8192 and
// 4096 x 14336, M = 1, 4, 8, 16, 32, 64. Kept values: int4 and int8 (g64 kept values = 128 dense columns,
// every block shape for fp16 activations at M <= 16, 1 / 2 / 4 / 8 / 16 splits of K at M > 16; 0 where a shape is not
// offered), fp16 and bf16 plain values; fp16 and bf16 activations. M > 16 (2:4 and dense) with a reused gemm_workspace.
// CUDA events around 200 launches, median of 7 runs; launches rotate over copies of the weights
// totalling > 200 MB (4x the H100's L2), so the numbers are HBM streaming.
// M > 64 (sparse24_gemm_large.cuh; plain values on sm_90a: the wgmma.sp kernel,
// sparse24_gemm_wgmma.cuh): M = 128 .. 4096 on the same shapes and 14336 x 4096, fp16 and bf16 plain values and int4
// codes, fp16 and bf16 activations, TFLOP/s counted as dense (2 M N K), against cuBLAS dense of the
// same activations and lowbit's dense int4 (where cuda::gemm takes M > 64); plain values also with
// the clustered wgmma kernel in columns of 16 weight blocks (default 8), wgmma at 128 tokens a block
// unclustered and the default again (with --large also 256 tokens unclustered, the mma.sp tiled
// kernel and the clustered kernel at 128 tokens; see bench_large; --plain: that one at M = 256);
// 20 launches (M >= 1024) or 100, median of 5.
// First the tensor cores' rate from registers alone (mma.sp.sync against mma.sync, no memory).
// Then (first) W8A8: see bench_int8.
// Usage: bench_cuda_sparse24 [--quick] [--large | --plain | --small | --int8 | --m16 | --profile | --profile16] (--large: only M > 64;
// --plain: only M > 64 with plain fp16 / bf16 values;
// --small: only M <= 64; --int8: only W8A8; --m16: only the M <= 16 kernels' comparison (first in a full run);
// --profile: one launch of the M > 64 kernel for fp16 values and int4, for ncu; --profile16: one of
// the M = 16 and the M = 1 default, int4, each M <= 16 shape)
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "lowbit/cuda.cuh"
#include "timing.cuh"

namespace {

namespace lb = lowbit;
using sym4 = lb::scheme<lb::int4, lb::fp16>;
using sym8 = lb::scheme<lb::int8, lb::fp16>;
int iterations = 200, repeats = 7;
bool plain_only = false;  // --plain: M > 64 with plain fp16 / bf16 values only (no int4 rows)
struct row { std::string format, act; std::size_t n, k, m; double us, dense, cublas, bytes; };
std::vector<row> rows;

template <class F>
double time_us(F&& launch) {  // with this benchmark's iterations and repeats (bench/cuda/timing.cuh)
  return bench_cuda::time_us(launch, iterations, repeats, 20);
}

template <class T>
T* device_random(std::size_t count, std::mt19937& rng, float scale) {
  std::vector<T> h(count);
  std::normal_distribution<float> normal(0.0f, scale);
  for (auto& v : h) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value) v = __float2bfloat16(normal(rng));
    else v = __float2half(normal(rng));
  }
  T* d = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&d, count * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(d, h.data(), count * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <class P>
const P* device_copy(const P* src, std::size_t bytes, std::vector<void*>& owned) {
  void* p = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&p, bytes));
  LOWBIT_CUDA_CHECK(cudaMemcpy(p, src, bytes, cudaMemcpyDeviceToDevice));
  owned.push_back(p);
  return static_cast<const P*>(p);
}

// Copies of packed weights totalling > 200 MB, the first the original.
template <class S>
std::vector<lb::cuda::packed_sparse24_view<S>> rotation(const lb::cuda::packed_sparse24_view<S>& v, std::vector<void*>& owned) {
  const std::size_t code_b = v.code_bytes(), meta_b = v.metadata_bytes(), scale_b = v.scale_bytes();
  std::vector<lb::cuda::packed_sparse24_view<S>> out((200u << 20) / v.bytes() + 2, v);
  for (std::size_t c = 1; c < out.size(); ++c) {
    out[c].codes = device_copy(v.codes, code_b, owned);
    out[c].metadata = device_copy(v.metadata, meta_b, owned);
    if (scale_b) out[c].scales = device_copy(v.scales, scale_b, owned);
  }
  return out;
}
template <class S>
std::vector<lb::cuda::packed_view<S>> rotation(const lb::cuda::packed_view<S>& v, std::vector<void*>& owned) {
  std::vector<lb::cuda::packed_view<S>> out((200u << 20) / v.bytes() + 2, v);
  for (std::size_t c = 1; c < out.size(); ++c) {
    out[c].codes = device_copy(v.codes, v.code_bytes(), owned);
    out[c].scales = device_copy(v.scales, v.scale_bytes(), owned);
  }
  return out;
}

// A quantized matrix with random codes and scales (the kernels' speed does not depend on them).
template <class S>
lb::quantized_matrix<S> random_quantized(std::size_t n, std::size_t k, std::size_t group, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.01f);
  lb::quantized_matrix<S> q(n, k, group);
  for (std::size_t i = 0; i < n * q.row_bytes(); ++i) q.codes()[i] = static_cast<uint8_t>(byte(rng));
  for (std::size_t i = 0; i < n * q.groups_per_row(); ++i) q.scales()[i] = lb::fp16(scale(rng));
  return q;
}

// The sm_90a wgmma.sp kernel with BN tokens a block (a Shape for time_large).
template <int BN, int Stages>
struct wgmma_shape {};
template <class Shape>
struct is_wgmma : std::false_type {};
template <int BN, int Stages>
struct is_wgmma<wgmma_shape<BN, Stages>> : std::true_type {};
// The clustered wgmma kernel (x by TMA multicast): BN tokens a block, blocks in columns of Column
// weight blocks.
template <int BN, int Stages, int Column>
struct cluster_shape {
  static constexpr int bn = BN, stages = Stages, column = Column;
};
template <class Shape>
struct is_cluster : std::false_type {};
template <int BN, int Stages, int Column>
struct is_cluster<cluster_shape<BN, Stages, Column>> : std::true_type {};
template <int BN, int Stages, int Column>
struct is_wgmma<cluster_shape<BN, Stages, Column>> : std::true_type {};

// M > 64: launch i of gemm_sparse24 with Shape (the default when void; a wgmma_shape: the wgmma
// kernel; a cluster_shape: the clustered one).
template <class Shape, class S, class T>
void launch_large(const T* x, std::size_t m, const std::vector<lb::cuda::packed_sparse24_view<S>>& views, T* y,
                  lb::cuda::gemm_options o, int i) {
  const int n = static_cast<int>(views[0].rows), k = static_cast<int>(views[0].cols);
  const auto& v = views[static_cast<std::size_t>(i) % views.size()];
  if constexpr (std::is_void<Shape>::value) lb::cuda::gemm_sparse24(x, m, k, v, y, n, nullptr, o);
  else if constexpr (is_cluster<Shape>::value) {
    if constexpr (lb::cuda::packed_sparse24_view<S>::plain) {
      if (!lb::cuda::detail::gemm_sparse24_wgmma_cluster<Shape::stages>(x, int(m), k, v, y, n, nullptr, o,
                                                                        std::integral_constant<int, Shape::bn>{}, Shape::column))
        std::exit(3);
    }
  } else if constexpr (is_wgmma<Shape>::value) {
    if constexpr (lb::cuda::packed_sparse24_view<S>::plain) lb::cuda::detail::gemm_sparse24_wgmma_with<std::is_same<Shape, wgmma_shape<256, 5>>::value ? 256 : 128,
                                                                        std::is_same<Shape, wgmma_shape<256, 5>>::value ? 5 : 6>(
        x, int(m), k, v, y, n, nullptr, o);
  } else lb::cuda::detail::gemm_sparse24_large_with<Shape>(x, int(m), k, v, y, n, nullptr, o);
}

// Times launch_large<Shape>; -1 where the device has no wgmma code.
template <class Shape, class S, class T>
double time_large(const T* x, std::size_t m, const std::vector<lb::cuda::packed_sparse24_view<S>>& views, T* y, int its,
                  lb::cuda::gemm_options o) {
  if constexpr (is_wgmma<Shape>::value) {
    if (!lb::cuda::detail::sparse24_wgmma_usable()) return -1.0;
  }
  return bench_cuda::time_us([&](int i) { launch_large<Shape>(x, m, views, y, o, i); }, its, 5, 3);
}

// The tensor cores' rate from registers alone: each warp runs `iters` rounds of 16 independent
// mma.sp m16n8k32 (Sparse) or 2 x 16 mma m16n8k16 (the same dense-equivalent work), fp16 in, fp32 sums.
template <bool Sparse>
__global__ void __launch_bounds__(256) mma_rate_kernel(int iters, float* out) {
  float acc[16][4] = {};
  const uint32_t v = 0x3c003c00u ^ (threadIdx.x & 1u);
  const uint32_t a[4] = {v, v, v, v}, b[4] = {v, v, v, v};
  for (int it = 0; it < iters; ++it) {
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      if constexpr (Sparse) lb::cuda::detail::mma_sp_16832<false>(acc[j], a, b, 0x44444444u);
      else lb::cuda::detail::mma_16816<false>(acc[j], a, b[0], b[1]);
    }
    if constexpr (!Sparse) {
#pragma unroll
      for (int j = 0; j < 16; ++j) lb::cuda::detail::mma_16816<false>(acc[j], a, b[2], b[3]);
    }
  }
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += acc[j][0] + acc[j][1] + acc[j][2] + acc[j][3];
  if (sum == 1.2345f) out[threadIdx.x] = sum;  // never true: keeps the work
}

// wgmma.sp's rate with no memory traffic: 2 warpgroups a block, each issuing m64n256k32 from
// registers (A) and the same 32 KB of shared memory (B, 128-byte swizzle), two a group, one group
// in flight while the next is issued (as the GEMM kernels).
__global__ void __launch_bounds__(256, 1) wgmma_sp_rate_kernel(int iters, float* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  namespace ld = lb::cuda::detail;
  extern __shared__ ::uint4 smem[];
  const unsigned base = (static_cast<unsigned>(__cvta_generic_to_shared(smem)) + 1023u) & ~1023u;
  for (int i = threadIdx.x; i < 2048; i += 256) {  // 32 KB of small fp16 values (not zeros)
    const uint32_t v = 0x30003000u + (static_cast<uint32_t>(i) & 0xffu);
    asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};" ::"r"(base + 16u * i), "r"(v));
  }
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  __syncthreads();
  float acc[32][1][4] = {};
  const uint32_t a[4] = {0x3c003c00u, 0x3c003c00u, 0x3c003c00u, 0x3c003c00u};
  const uint64_t desc = ld::sw128_descriptor(base);
  for (int it = 0; it < iters; ++it) {
    ld::wgmma_fence();
    ld::wgmma_sp_m64n256k32<false>(acc, a, desc, 0x44444444u);
    ld::wgmma_sp_m64n256k32<false>(acc, a, desc + 4, 0x44444444u);
    ld::wgmma_commit();
    ld::wgmma_wait<1>();
  }
  ld::wgmma_wait<0>();
  float sum = 0.0f;
  for (int j = 0; j < 32; ++j) sum += acc[j][0][0] + acc[j][0][1] + acc[j][0][2] + acc[j][0][3];
  if (sum == 1.2345f) out[threadIdx.x] = sum;  // never true: keeps the work
#else
  (void)iters, (void)out;
#endif
}

void mma_rates() {
  const int sms = lb::cuda::detail::sm_count(), iters = 8192;
  float* out = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&out, 256 * sizeof(float)));
  for (int per_sm : {1, 2, 4}) {
    const int blocks = sms * per_sm;
    const double flop = double(blocks) * 8 * iters * 16 * 8192.0;
    const double sp = bench_cuda::time_us([&](int) { mma_rate_kernel<true><<<blocks, 256>>>(iters, out); }, 5, 3, 1);
    const double de = bench_cuda::time_us([&](int) { mma_rate_kernel<false><<<blocks, 256>>>(iters, out); }, 5, 3, 1);
    std::printf("mma rate from registers, %d warps an SM: mma.sp.sync m16n8k32 %.0f TFLOP/s (dense-equivalent), mma.sync m16n8k16 %.0f TFLOP/s\n",
                8 * per_sm, flop / sp * 1e-6, flop / de * 1e-6);
  }
  if (lb::cuda::detail::sparse24_wgmma_usable()) {
    const int iters = 4096;
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(wgmma_sp_rate_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 33 * 1024));
    const double flop = double(sms) * 2 * iters * 2 * (2.0 * 64 * 256 * 32);
    const double us = bench_cuda::time_us([&](int) { wgmma_sp_rate_kernel<<<sms, 256, 33 * 1024>>>(iters, out); }, 5, 3, 1);
    std::printf("wgmma.sp rate from registers / shared memory, 2 warpgroups an SM: m64n256k32 %.0f TFLOP/s (dense-equivalent)\n",
                flop / us * 1e-6);
  }
  cudaFree(out);
}

// One launch each of the default fp16-values and int4 kernels at 8192 x 8192, M = 4096 (for ncu).
void profile_large() {
  std::mt19937 rng(3);
  const std::size_t n = 8192, k = 8192, m = 4096, kept = k / 2;
  __half* x = device_random<__half>(m * k, rng, 1.0f);
  __half* y = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&y, m * n * sizeof(__half)));
  std::vector<uint8_t> nibbles(n * k / 8, 0x94);
  std::vector<float> kept_f(n * kept, 0.01f);
  const auto hp = lb::cuda::pack_sparse24(lb::sparse24_matrix<float>(kept_f.data(), n, kept, nibbles.data(), k));
  const auto sp4 = lb::cuda::pack_sparse24(lb::sparse24_matrix<sym4>(random_quantized<sym4>(n, kept, 64, rng).view(), nibbles.data(), k));
  lb::cuda::gemm_sparse24(x, m, k, hp.view(), y, n);
  lb::cuda::gemm_sparse24(x, m, k, sp4.view(), y, n);
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  cudaFree(x);
  cudaFree(y);
}

void bench_large(cublasHandle_t handle, std::mt19937& rng) {
  using bf = __nv_bfloat16;
  namespace lc = lb::cuda;
  struct shape { std::size_t n, k; };
  const shape shapes[] = {{8192, 8192}, {4096, 14336}, {14336, 4096}};
  const std::size_t ms[] = {128, 256, 512, 1024, 2048, 4096}, max_m = 4096;
  std::uniform_int_distribution<int> byte(0, 255);
  lc::gemm_workspace workspace;
  lc::gemm_options o;
  o.workspace = &workspace;
  std::printf("\n## M > 64 (tiled kernel); TFLOP/s as dense 2MNK; plain values: the default and cuBLAS timed in alternating rounds\n\n| kept values | act | N x K | M | 2:4 µs | TFLOP/s | other shapes µs | dense lowbit int4 µs | cuBLAS µs | cuBLAS TFLOP/s | vs cuBLAS |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const shape& s : shapes) {
    __half* w = device_random<__half>(s.n * s.k, rng, 0.02f);
    bf* wb = device_random<bf>(s.n * s.k, rng, 0.02f);
    __half* x = device_random<__half>(max_m * s.k, rng, 1.0f);
    bf* xb = device_random<bf>(max_m * s.k, rng, 1.0f);
    __half* y = nullptr;
    bf* yb = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, max_m * s.n * sizeof(__half)));
    LOWBIT_CUDA_CHECK(cudaMalloc(&yb, max_m * s.n * sizeof(bf)));
    const std::size_t kept = s.k / 2;
    static const uint8_t pairs[6] = {0x4, 0x8, 0xc, 0x9, 0xd, 0xe};
    std::vector<uint8_t> nibbles(s.n * s.k / 8);
    for (uint8_t& b : nibbles) b = static_cast<uint8_t>(pairs[byte(rng) % 6] | (pairs[byte(rng) % 6] << 4));
    const auto sp4 = lc::pack_sparse24(lb::sparse24_matrix<sym4>(random_quantized<sym4>(s.n, kept, 64, rng).view(), nibbles.data(), s.k));
    const auto dp4 = lc::pack(random_quantized<sym4>(s.n, s.k, 128, rng).view());
    std::vector<float> kept_f(s.n * kept);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& v : kept_f) v = normal(rng);
    const std::vector<lb::bf16> kept_b(kept_f.begin(), kept_f.end());
    const auto hp = lc::pack_sparse24(lb::sparse24_matrix<float>(kept_f.data(), s.n, kept, nibbles.data(), s.k));
    const auto bp = lc::pack_sparse24(lb::sparse24_matrix<lb::bf16>(kept_b.data(), s.n, kept, nibbles.data(), s.k));
    std::vector<void*> owned;
    const auto s4s = rotation(sp4.view(), owned);
    const auto d4s = rotation(dp4.view(), owned);
    const auto hs = rotation(hp.view(), owned);
    const auto bs = rotation(bp.view(), owned);
    for (std::size_t m : ms) {
      const int its = m >= 1024 ? 20 : 100;
      const double flop = 2.0 * double(m) * double(s.n) * double(s.k);
      const float alpha = 1.0f, beta = 0.0f;
      const auto cublas_fp16 = [&](int) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, w, CUDA_R_16F, int(s.k),
                                  x, CUDA_R_16F, int(s.k), &beta, y, CUDA_R_16F, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      };
      const auto cublas_bf16 = [&](int) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, wb, CUDA_R_16BF, int(s.k),
                                  xb, CUDA_R_16BF, int(s.k), &beta, yb, CUDA_R_16BF, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      };
      const double cublas = bench_cuda::time_us(cublas_fp16, its, 5, 3);
      const double cublas_bf = bench_cuda::time_us(cublas_bf16, its, 5, 3);
      double dense4 = -1.0;  // lowbit's dense int4 kernel, where cuda::gemm takes M > 64
      if (!plain_only) try {
        dense4 = bench_cuda::time_us([&](int i) {
          lc::gemm(x, m, s.k, d4s[static_cast<std::size_t>(i) % d4s.size()], y, s.n, nullptr, o);
        }, its, 5, 3);
      } catch (const lb::error&) {
      }
      const auto line = [&](const char* kind, const char* act, double us, const std::vector<double>& others, double peer,
                            double dense) {
        std::string other;
        for (double u : others) {
          char b[32];
          std::snprintf(b, sizeof b, "%s%.1f", other.empty() ? "" : " / ", u);
          other += b;
        }
        char d[32] = "-";
        if (dense > 0) std::snprintf(d, sizeof d, "%.1f", dense);
        std::printf("| %s | %s | %zu x %zu | %zu | %.1f | %.0f | %s | %s | %.1f | %.0f | %.2fx |\n", kind, act, s.n, s.k, m, us,
                    flop / us * 1e-6, other.empty() ? "-" : other.c_str(), d, peer, flop / peer * 1e-6, peer / us);
        std::fflush(stdout);
      };
      // Plain values: the default (wgmma.sp on sm_90a), then the clustered kernel (x by TMA
      // multicast; K split by default where its blocks are fewer than the SMs) with its blocks in
      // columns of 16 weight blocks (default 8), the unclustered wgmma kernel with 128 tokens a
      // block, the default again (the spread within one run); with --large also the unclustered
      // wgmma kernel with 256 tokens, the mma.sp tiled kernel's default shape and the clustered
      // kernel with 128 tokens a block.
      using lc::detail::sparse24_large_default;
      // The default and cuBLAS in alternating rounds (bench_cuda::time_interleaved_us: the board's
      // power cap makes back-to-back timings depend on their order); the row's cuBLAS figure is that one.
      const auto plain_line = [&](const char* kind, const char* act, auto* xx, const auto& views, auto* yy, const auto& peer_launch) {
        const auto timed = bench_cuda::time_interleaved_us(
            [&](int i) { launch_large<void>(xx, m, views, yy, o, i); },
            peer_launch, its, 5, 3);
        const double first = timed.first, peer = timed.second;
        std::vector<double> others = {time_large<cluster_shape<256, 6, 16>>(xx, m, views, yy, its, o),
                                      time_large<wgmma_shape<128, 6>>(xx, m, views, yy, its, o),
                                      time_large<void>(xx, m, views, yy, its, o)};
        if (!plain_only) {
          others.push_back(time_large<wgmma_shape<256, 5>>(xx, m, views, yy, its, o));
          others.push_back(time_large<sparse24_large_default<4>>(xx, m, views, yy, its, o));
          others.push_back(time_large<cluster_shape<128, 12, 8>>(xx, m, views, yy, its, o));
        } else if (m == 256) {
          others.push_back(time_large<cluster_shape<128, 12, 8>>(xx, m, views, yy, its, o));
        }
        line(kind, act, first, others, peer, -1.0);
      };
      plain_line("fp16 values", "fp16", x, hs, y, cublas_fp16);
      plain_line("bf16 values", "bf16", xb, bs, yb, cublas_bf16);
      if (!plain_only) {
        line("int4", "fp16", time_large<void>(x, m, s4s, y, its, o), {}, cublas, dense4);
        line("int4", "bf16", time_large<void>(xb, m, s4s, yb, its, o), {}, cublas_bf, -1.0);
      }
    }
    for (void* p : owned) cudaFree(p);
    cudaFree(w);
    cudaFree(wb);
    cudaFree(x);
    cudaFree(xb);
    cudaFree(y);
    cudaFree(yb);
  }
}

// W8A8 (gemm_sparse24_int8, sparse24_gemm_int8.cuh): 2:4 int8 weights with a scale a row on the
// integer sparse tensor cores, against cuBLASLt's dense int8 GEMM (int8 x int8 -> int32, the
// engines' W8A8 peer; its best heuristic algorithm, 32 MB workspace), cuBLAS fp16 dense and
// lowbit's 2:4 fp16-values kernel, at N x K = 8192 x 8192 and 4096 x 14336, M = 1 .. 4096. lowbit
// twice: from fp16 x (the per-token quantizer included) and from int8 x (the engine keeps int8
// activations). Weights rotate over copies (> 200 MB) for M <= 64. TOP/s count the dense 2 M N K.
// Also other block shapes and splits of K of the kernel (what the defaults were chosen against).
#define CUBLASLT_CHECK(call) CUBLAS_CHECK(call)
void bench_int8(cublasHandle_t handle, std::mt19937& rng) {
  namespace lc = lb::cuda;
  cublasLtHandle_t lt;
  CUBLASLT_CHECK(cublasLtCreate(&lt));
  void* lt_workspace = nullptr;
  const std::size_t lt_workspace_bytes = 32u << 20;
  LOWBIT_CUDA_CHECK(cudaMalloc(&lt_workspace, lt_workspace_bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  struct shape { std::size_t n, k; };
  const shape shapes[] = {{8192, 8192}, {4096, 14336}};
  const std::size_t ms[] = {1, 16, 64, 256, 1024, 4096};
  const std::size_t max_m = 4096;
  std::printf("\nW8A8 2:4 (int8 kept values, a scale a row; x int8 per token)\n");
  std::printf("| N x K | M | W8A8 2:4 µs (fp16 x, quantizer included) | W8A8 2:4 µs (int8 x) | TOP/s | other block shapes µs <warps N, warps M, tiles, token tiles, stages, blocks an SM> | cuBLASLt int8 dense µs | TOP/s | cuBLAS fp16 µs | 2:4 fp16 values µs | int8 x vs cuBLASLt int8 | fp16 x vs cuBLAS fp16 |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const shape& s : shapes) {
    const std::size_t kept = s.k / 2;
    static const uint8_t pairs[6] = {0x4, 0x8, 0xc, 0x9, 0xd, 0xe};
    std::vector<uint8_t> nibbles(s.n * s.k / 8);
    for (uint8_t& b : nibbles) b = static_cast<uint8_t>(pairs[byte(rng) % 6] | (pairs[byte(rng) % 6] << 4));
    const auto p8 = lc::pack_sparse24_int8(lb::sparse24_matrix<sym8>(random_quantized<sym8>(s.n, kept, kept, rng).view(), nibbles.data(), s.k));
    std::vector<float> kept_f(s.n * kept);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& v : kept_f) v = normal(rng);
    const auto hp = lc::pack_sparse24(lb::sparse24_matrix<float>(kept_f.data(), s.n, kept, nibbles.data(), s.k));
    std::vector<void*> owned;
    std::vector<lc::packed_sparse24_int8_view> p8s((200u << 20) / p8.bytes() + 2, p8.view());
    for (std::size_t c = 1; c < p8s.size(); ++c) {
      const auto& v = p8.view();
      p8s[c].blocks = device_copy(v.blocks, v.tiles() * v.chunks * 1280, owned);
      p8s[c].scales = device_copy(v.scales, v.tiles() * 64, owned);
    }
    const auto hs = rotation(hp.view(), owned);
    // Dense peers' weights: int8 (N x K row-major = K x N column-major, op T) and fp16, 4 copies each.
    std::vector<int8_t> w8h(s.n * s.k);
    for (auto& v : w8h) v = static_cast<int8_t>(byte(rng) - 128);
    std::vector<const int8_t*> w8s;
    std::vector<const __half*> w16s;
    __half* w16 = device_random<__half>(s.n * s.k, rng, 0.02f);
    owned.push_back(w16);
    for (int c = 0; c < 4; ++c) {
      int8_t* d = nullptr;
      LOWBIT_CUDA_CHECK(cudaMalloc(&d, w8h.size()));
      LOWBIT_CUDA_CHECK(cudaMemcpy(d, w8h.data(), w8h.size(), cudaMemcpyHostToDevice));
      owned.push_back(d);
      w8s.push_back(d);
      w16s.push_back(c == 0 ? w16 : device_copy(w16, s.n * s.k * 2, owned));
    }
    __half* x = device_random<__half>(max_m * s.k, rng, 1.0f);
    int8_t* xq = nullptr;
    float* xs = nullptr;
    int32_t* y32 = nullptr;
    __half* y = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&xq, max_m * s.k));
    LOWBIT_CUDA_CHECK(cudaMalloc(&xs, max_m * sizeof(float)));
    LOWBIT_CUDA_CHECK(cudaMalloc(&y32, max_m * s.n * sizeof(int32_t)));
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, max_m * s.n * sizeof(__half)));
    lc::quantize_int8_rows(x, max_m, s.k, s.k, xq, s.k, xs);
    lc::gemm_workspace workspace;
    lc::int8_rows_buffer activations;
    lc::gemm_options o;
    o.workspace = &workspace;
    for (std::size_t m : ms) {
      const int its = m >= 1024 ? 20 : 100;
      const auto timed = [&](auto&& launch) { return bench_cuda::time_us(launch, its, 5, 5); };
      const auto at = [](const auto& views, int i) -> const auto& { return views[static_cast<std::size_t>(i) % views.size()]; };
      const double us_fp16x = timed([&](int i) { lc::gemm_sparse24_int8(x, m, s.k, at(p8s, i), y, s.n, nullptr, o, &activations); });
      const double us_int8x = timed([&](int i) { lc::gemm_sparse24_int8_quantized(xq, xs, m, s.k, at(p8s, i), y, s.n, nullptr, o); });
      // Other block shapes (sparse24_int8_config<warps N, warps M, tiles a warp, token tiles a warp, stages, blocks an SM>)
      // and splits of K, for the record of what the defaults were chosen against.
      std::string others;
      namespace ld = lc::detail;
      const int mi = int(m), kk = int(s.k), nn = int(s.n);
      const auto variant = [&](auto config, int split_k) {
        using C = decltype(config);
        lc::gemm_options vo = o;
        vo.split_k = split_k;
        const double us = timed([&](int i) { ld::launch_sparse24_int8<C>(xq, xs, mi, kk, at(p8s, i), y, nn, nullptr, vo); });
        char text[96];
        std::snprintf(text, sizeof text, "%s<%d,%d,%d,%d,%d,%d>%s%s %.1f", others.empty() ? "" : "; ", C::warps_n, C::warps_m, C::tw,
                      C::mw, C::stages, C::min_blocks, split_k ? " split " : "", split_k ? std::to_string(split_k).c_str() : "", us);
        others += text;
      };
      if (m == 1) {
        variant(ld::sparse24_int8_m8{}, 2);
        variant(ld::sparse24_int8_m8{}, 8);
        variant(ld::sparse24_int8_config<8, 1, 1, 1, 8, 1>{}, 0);
        variant(ld::sparse24_int8_config<4, 1, 1, 1, 8, 4>{}, 0);
        variant(ld::sparse24_int8_config<8, 1, 2, 1, 4, 2>{}, 0);
      } else if (m == 16) {
        variant(ld::sparse24_int8_config<8, 1, 1, 2, 8, 1>{}, 0);
        variant(ld::sparse24_int8_config<4, 1, 1, 2, 8, 4>{}, 0);
      } else if (m == 64) {
        variant(ld::sparse24_int8_config<8, 1, 1, 8, 4, 2>{}, 0);
        variant(ld::sparse24_int8_m64{}, 16);
      } else {
        variant(ld::sparse24_int8_config<4, 2, 4, 4, 4, 1>{}, 0);
        variant(ld::sparse24_int8_config<2, 2, 4, 8, 3, 2>{}, 0);
      }
      // cuBLASLt int8: D (N x M, int32, column-major) = W (op T of K x N) · xq (K x M).
      cublasLtMatmulDesc_t op;
      CUBLASLT_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I));
      const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
      CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof trans));
      CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof no_trans));
      cublasLtMatrixLayout_t la, lbt, lcd;
      CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, s.k, s.n, s.k));
      CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&lbt, CUDA_R_8I, s.k, m, s.k));
      CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&lcd, CUDA_R_32I, s.n, m, s.n));
      cublasLtMatmulPreference_t pref;
      CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
      CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt_workspace_bytes,
                                                          sizeof lt_workspace_bytes));
      cublasLtMatmulHeuristicResult_t heuristic{};
      int found = 0;
      CUBLASLT_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lbt, lcd, lcd, pref, 1, &heuristic, &found));
      double us_lt = -1.0;
      if (found > 0) {
        const int32_t alpha = 1, beta = 0;
        us_lt = timed([&](int i) {
          CUBLASLT_CHECK(cublasLtMatmul(lt, op, &alpha, at(w8s, i), la, xq, lbt, &beta, y32, lcd, y32, lcd, &heuristic.algo,
                                        lt_workspace, lt_workspace_bytes, nullptr));
        });
      }
      cublasLtMatmulPreferenceDestroy(pref);
      cublasLtMatrixLayoutDestroy(la);
      cublasLtMatrixLayoutDestroy(lbt);
      cublasLtMatrixLayoutDestroy(lcd);
      cublasLtMatmulDescDestroy(op);
      const float alpha = 1.0f, beta = 0.0f;
      const double us_cublas = timed([&](int i) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, at(w16s, i), CUDA_R_16F,
                                  int(s.k), x, CUDA_R_16F, int(s.k), &beta, y, CUDA_R_16F, int(s.n), CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
      });
      const double us_fp16v = timed([&](int i) { lc::gemm_sparse24(x, m, s.k, at(hs, i), y, s.n, nullptr, o); });
      const double ops = 2.0 * double(m) * double(s.n) * double(s.k) * 1e-6;
      std::printf("| %zu x %zu | %zu | %.1f | %.1f | %.0f | %s | %.1f | %.0f | %.1f | %.1f | %.2fx | %.2fx |\n", s.n, s.k, m, us_fp16x,
                  us_int8x, ops / us_int8x, others.c_str(), us_lt, us_lt > 0 ? ops / us_lt : 0.0, us_cublas, us_fp16v, us_lt / us_int8x,
                  us_cublas / us_fp16x);
      std::fflush(stdout);
    }
    LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
    for (void* p : owned) cudaFree(p);
    cudaFree(x);
    cudaFree(xq);
    cudaFree(xs);
    cudaFree(y32);
    cudaFree(y);
  }
  cudaFree(lt_workspace);
  cublasLtDestroy(lt);
}

// M <= 16 (issue 8: 2:4 + int4 at >= 4x cuBLAS fp16): the default (sm_90a: the wgmma.sp kernel,
// sparse24_gemm_wgmma_small.cuh) against the mma.sp kernel's default block shape and the wgmma
// kernel's other shapes <tokens, warpgroups, stages> and splits of K, int4 and int8 (g64 kept
// values) with fp16 and bf16 activations, M = 1, 4, 6, 8, 9, 12, 16, both shapes (the wgmma kernel's
// shapes from M = 6).
template <int NT, int WG, int Stages, class S, class T>
double time_small_wgmma(const T* x, std::size_t m, const std::vector<lb::cuda::packed_sparse24_view<S>>& views, T* y, int splits,
                        bool cluster = false, bool dependent = false) {
  if (!lb::cuda::detail::sparse24_wgmma_usable()) return -1.0;
  const int n = static_cast<int>(views[0].rows), k = static_cast<int>(views[0].cols);
  return time_us([&](int i) {
    lb::cuda::detail::gemm_sparse24_wgmma_small_with<NT, WG, Stages>(x, int(m), k, views[static_cast<std::size_t>(i) % views.size()], y,
                                                                   n, nullptr, splits, cluster, dependent);
  });
}
template <class S, class T>
double time_small_mma(const T* x, std::size_t m, const std::vector<lb::cuda::packed_sparse24_view<S>>& views, T* y) {
  const int n = static_cast<int>(views[0].rows), k = static_cast<int>(views[0].cols);
  return time_us([&](int i) {
    lb::cuda::detail::gemm_sparse24_mma_small(x, int(m), k, views[static_cast<std::size_t>(i) % views.size()], y, n, nullptr,
                                              lb::cuda::gemm_options{});
  });
}
void bench_small_wgmma(cublasHandle_t handle, std::mt19937& rng) {
  using bf = __nv_bfloat16;
  struct shape { std::size_t n, k; };
  const shape shapes[] = {{8192, 8192}, {4096, 14336}};
  std::uniform_int_distribution<int> byte(0, 255);
  if (lb::cuda::detail::sparse24_wgmma_usable()) {  // how many clusters of 1, 2, 4 blocks of the M <= 16 kernel fit at once
    namespace ld = lb::cuda::detail;
    constexpr auto kernel = ld::sparse24_wgmma_small_kernel<__half, 1, 16, 4, 6>;
    const int bytes = int(ld::sparse24_wgmma_small_layout<1, 16, 4, 6>::bytes);
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    std::printf("small wgmma kernel <16,4,6>: clusters of 1 / 2 / 4 blocks resident at once:");
    for (unsigned c : {1u, 2u, 4u}) {
      cudaLaunchConfig_t config{};
      config.gridDim = dim3(64, c);
      config.blockDim = dim3(512);
      config.dynamicSmemBytes = std::size_t(bytes);
      cudaLaunchAttribute attribute{};
      attribute.id = cudaLaunchAttributeClusterDimension;
      attribute.val.clusterDim.x = 1, attribute.val.clusterDim.y = c, attribute.val.clusterDim.z = 1;
      config.attrs = &attribute;
      config.numAttrs = 1;
      int clusters = -1;
      if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) (void)cudaGetLastError();
      std::printf(" %d", clusters);
    }
    std::printf("\n");
  }
  std::printf("\n## M <= 16: the wgmma.sp kernel against the mma.sp kernel (µs)\n\n| kept values | act | N x K | M | default | mma.sp | "
              "wgmma <tokens, warpgroups, stages>: <16,4,6>; <16,4,4>; <16,4,6> in a PDL chain | cuBLAS | default vs cuBLAS | mma.sp vs cuBLAS | weight MB | "
              "default GB/s | default, PDL chain | PDL chain vs cuBLAS |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const shape& s : shapes) {
    __half* w = device_random<__half>(s.n * s.k, rng, 0.02f);
    bf* wb = device_random<bf>(s.n * s.k, rng, 0.02f);
    __half* x = device_random<__half>(16 * s.k, rng, 1.0f);
    bf* xb = device_random<bf>(16 * s.k, rng, 1.0f);
    __half* y = nullptr;
    bf* yb = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, 16 * s.n * sizeof(__half)));
    LOWBIT_CUDA_CHECK(cudaMalloc(&yb, 16 * s.n * sizeof(bf)));
    const std::size_t kept = s.k / 2;
    static const uint8_t pairs[6] = {0x4, 0x8, 0xc, 0x9, 0xd, 0xe};
    std::vector<uint8_t> nibbles(s.n * s.k / 8);
    for (uint8_t& b : nibbles) b = static_cast<uint8_t>(pairs[byte(rng) % 6] | (pairs[byte(rng) % 6] << 4));
    const auto sp4 = lb::cuda::pack_sparse24(lb::sparse24_matrix<sym4>(random_quantized<sym4>(s.n, kept, 64, rng).view(), nibbles.data(), s.k));
    const auto sp8 = lb::cuda::pack_sparse24(lb::sparse24_matrix<sym8>(random_quantized<sym8>(s.n, kept, 64, rng).view(), nibbles.data(), s.k));
    std::vector<void*> owned;
    const auto s4s = rotation(sp4.view(), owned);
    const auto s8s = rotation(sp8.view(), owned);
    for (std::size_t m : {1, 4, 6, 8, 9, 12, 16}) {
      const float alpha = 1.0f, beta = 0.0f;
      const double cublas = time_us([&](int) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, w, CUDA_R_16F, int(s.k), x,
                                  CUDA_R_16F, int(s.k), &beta, y, CUDA_R_16F, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      const double cublas_bf = time_us([&](int) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, wb, CUDA_R_16BF, int(s.k), xb,
                                  CUDA_R_16BF, int(s.k), &beta, yb, CUDA_R_16BF, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      const auto line = [&](const char* name, const char* act, const auto& views, const auto* xx, auto* yy, double peer) {
        const double def = time_us([&](int i) {
          lb::cuda::gemm_sparse24(xx, m, s.k, views[static_cast<std::size_t>(i) % views.size()], yy, s.n);
        });
        const double mma = time_small_mma(xx, m, views, yy);
        // The default in a chain of programmatic dependent launches (gemm_options::dependent_launch:
        // each launch may start while the one before finishes; cuBLAS is timed standalone).
        lb::cuda::gemm_options chained;
        chained.dependent_launch = true;
        const double pdl = time_us([&](int i) {
          lb::cuda::gemm_sparse24(xx, m, s.k, views[static_cast<std::size_t>(i) % views.size()], yy, s.n, nullptr, chained);
        });
        char others[160] = "-";
        if (m > 4)  // the 16-token kernel takes any M <= 16 (the default from M = 9)
          std::snprintf(others, sizeof others, "%.1f; %.1f; %.1f", time_small_wgmma<16, 4, 6>(xx, m, views, yy, 0),
                        time_small_wgmma<16, 4, 4>(xx, m, views, yy, 0), time_small_wgmma<16, 4, 6>(xx, m, views, yy, 0, false, true));
        const double bytes = double(views[0].bytes());
        std::printf("| %s | %s | %zu x %zu | %zu | %.1f | %.1f | %s | %.1f | %.2fx | %.2fx | %.2f | %.0f | %.1f | %.2fx |\n", name,
                    act, s.n, s.k, m, def, mma, others, peer, peer / def, peer / mma, bytes * 1e-6, bytes / def * 1e-3, pdl, peer / pdl);
        std::fflush(stdout);
      };
      line("int4", "fp16", s4s, x, y, cublas);
      line("int8", "fp16", s8s, x, y, cublas);
      line("int4", "bf16", s4s, xb, yb, cublas_bf);
      line("int8", "bf16", s8s, xb, yb, cublas_bf);
    }
    for (void* p : owned) cudaFree(p);
    cudaFree(w);
    cudaFree(wb);
    cudaFree(x);
    cudaFree(xb);
    cudaFree(y);
    cudaFree(yb);
  }
}

// --profile16: one launch each of the M = 16 default (the small wgmma.sp kernel) and the M = 1
// default (the mma.sp kernel), int4 g64 fp16, 8192 x 8192 then 4096 x 14336 (for ncu).
void profile_m16() {
  std::mt19937 rng(5);
  struct shape { std::size_t n, k; };
  for (const shape s : {shape{8192, 8192}, shape{4096, 14336}}) {
    __half* x = device_random<__half>(16 * s.k, rng, 1.0f);
    __half* y = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, 16 * s.n * sizeof(__half)));
    std::vector<uint8_t> nibbles(s.n * s.k / 8, 0x94);
    const auto sp4 = lb::cuda::pack_sparse24(lb::sparse24_matrix<sym4>(random_quantized<sym4>(s.n, s.k / 2, 64, rng).view(), nibbles.data(), s.k));
    lb::cuda::gemm_sparse24(x, 16, s.k, sp4.view(), y, s.n);
    lb::cuda::gemm_sparse24(x, 1, s.k, sp4.view(), y, s.n);
    LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
    cudaFree(x);
    cudaFree(y);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool large = true, small = true, int8 = true, small_wgmma = true;
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "--quick") == 0) iterations = 20, repeats = 3;
    else if (std::strcmp(argv[a], "--large") == 0) small = int8 = small_wgmma = false;
    else if (std::strcmp(argv[a], "--plain") == 0) small = int8 = small_wgmma = false, plain_only = true;
    else if (std::strcmp(argv[a], "--small") == 0) large = int8 = small_wgmma = false;
    else if (std::strcmp(argv[a], "--int8") == 0) large = small = small_wgmma = false, int8 = true;
    else if (std::strcmp(argv[a], "--m16") == 0) large = small = int8 = false;
    else if (std::strcmp(argv[a], "--profile16") == 0) {
      profile_m16();
      return 0;
    } else if (std::strcmp(argv[a], "--profile") == 0) {
      profile_large();
      return 0;
    }
  }
  cudaDeviceProp prop{};
  LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  using bf = __nv_bfloat16;
  struct shape { std::size_t n, k; };
  const shape shapes[] = {{8192, 8192}, {4096, 14336}};
  const std::size_t ms[] = {1, 4, 8, 16, 32, 64};
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  if (small_wgmma) bench_small_wgmma(handle, rng);
  if (int8) bench_int8(handle, rng);
  if (large) {
    mma_rates();
    bench_large(handle, rng);
  }
  if (!small) {
    cublasDestroy(handle);
    return 0;
  }
  lb::cuda::gemm_workspace workspace;  // M > 16: the split-K scratch, reused
  std::printf("\n| kept values | N x K | M | 2:4 µs, fp16 (default; M <= 16: 1 / 2 tiles, 8 warps; 1 / 2 tiles, 16 warps; 4 tiles, 16 / 8 warps; M > 16: 1 / 2 / 4 / 8 / 16 splits) | weight GB/s | dense lowbit µs | cuBLAS fp16 µs | vs cuBLAS | vs dense |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const shape& s : shapes) {
    __half* w = device_random<__half>(s.n * s.k, rng, 0.02f);
    bf* wb = device_random<bf>(s.n * s.k, rng, 0.02f);
    __half* x = device_random<__half>(64 * s.k, rng, 1.0f);  // the largest M
    bf* xb = device_random<bf>(64 * s.k, rng, 1.0f);
    __half* y = nullptr;
    bf* yb = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&y, 64 * s.n * sizeof(__half)));
    LOWBIT_CUDA_CHECK(cudaMalloc(&yb, 64 * s.n * sizeof(bf)));
    // Random positions, shared by every 2:4 matrix.
    const std::size_t kept = s.k / 2;
    static const uint8_t pairs[6] = {0x4, 0x8, 0xc, 0x9, 0xd, 0xe};  // (a, b), a < b
    std::vector<uint8_t> nibbles(s.n * s.k / 8);
    for (uint8_t& b : nibbles) b = static_cast<uint8_t>(pairs[byte(rng) % 6] | (pairs[byte(rng) % 6] << 4));
    const auto sp4 = lb::cuda::pack_sparse24(lb::sparse24_matrix<sym4>(random_quantized<sym4>(s.n, kept, 64, rng).view(), nibbles.data(), s.k));
    const auto sp8 = lb::cuda::pack_sparse24(lb::sparse24_matrix<sym8>(random_quantized<sym8>(s.n, kept, 64, rng).view(), nibbles.data(), s.k));
    const auto dp4 = lb::cuda::pack(random_quantized<sym4>(s.n, s.k, 128, rng).view());
    const auto dp8 = lb::cuda::pack(random_quantized<sym8>(s.n, s.k, 128, rng).view());
    // Plain kept values: float rounded to fp16 by the pack, and bf16 as they are.
    std::vector<float> kept_f(s.n * kept);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& v : kept_f) v = normal(rng);
    const std::vector<lb::bf16> kept_b(kept_f.begin(), kept_f.end());
    const auto hp = lb::cuda::pack_sparse24(lb::sparse24_matrix<float>(kept_f.data(), s.n, kept, nibbles.data(), s.k));
    const auto bp = lb::cuda::pack_sparse24(lb::sparse24_matrix<lb::bf16>(kept_b.data(), s.n, kept, nibbles.data(), s.k));

    std::vector<void*> owned;
    const auto s4s = rotation(sp4.view(), owned);
    const auto s8s = rotation(sp8.view(), owned);
    const auto d4s = rotation(dp4.view(), owned);
    const auto d8s = rotation(dp8.view(), owned);
    const auto hs = rotation(hp.view(), owned);
    const auto bs = rotation(bp.view(), owned);
    const auto at = [](const auto& views, int i) -> const auto& { return views[static_cast<std::size_t>(i) % views.size()]; };
    for (std::size_t m : ms) {
      const float alpha = 1.0f, beta = 0.0f;
      const double cublas = time_us([&](int) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, w, CUDA_R_16F, int(s.k),
                                  x, CUDA_R_16F, int(s.k), &beta, y, CUDA_R_16F, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      const double cublas_bf = time_us([&](int) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(m), int(s.k), &alpha, wb, CUDA_R_16BF, int(s.k),
                                  xb, CUDA_R_16BF, int(s.k), &beta, yb, CUDA_R_16BF, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      // Integer codes, fp16 activations: M <= 16 every block shape (default; 1 / 2 tiles, 8 warps;
      // 1 / 2 tiles, 16 warps; 4 tiles, 16 / 8 warps); M > 16 (the wide kernel) the default and
      // 1 / 2 / 4 / 8 / 16 splits of K.
      const int shapes_tw[7][2] = {{0, 0}, {1, 8}, {2, 8}, {1, 16}, {2, 16}, {4, 16}, {4, 8}};
      const int splits[7] = {0, 1, 2, 4, 8, 16, 0};
      lb::cuda::gemm_options defaults;
      defaults.workspace = &workspace;
      const auto sweep = [&](const char* name, const auto& views, const auto& dense_views) {
        double us[7] = {};
        for (int v = 0; v < 7; ++v) {
          lb::cuda::gemm_options o = defaults;
          if (m > 16) {
            if (v == 6) continue;
            o.split_k = splits[v];
          } else {
            if (views[0].tiles() % (shapes_tw[v][0] ? shapes_tw[v][0] : 1)) continue;
            o.tiles_per_block = shapes_tw[v][0];
            o.warps = shapes_tw[v][1];
          }
          us[v] = time_us([&](int i) { lb::cuda::gemm_sparse24(x, m, s.k, at(views, i), y, s.n, nullptr, o); });
        }
        const double dense = time_us([&](int i) { lb::cuda::gemm(x, m, s.k, at(dense_views, i), y, s.n, nullptr, defaults); });
        const double bytes = double(views[0].bytes());
        rows.push_back({name, "fp16", s.n, s.k, m, us[0], dense, cublas, bytes});
        std::printf("| %s | %zu x %zu | %zu | %.1f (%.1f / %.1f; %.1f / %.1f; %.1f / %.1f) | %.0f | %.1f | %.1f | %.2fx | %.2fx |\n", name, s.n,
                    s.k, m, us[0], us[1], us[2], us[3], us[4], us[5], us[6], bytes / us[0] * 1e-3, dense, cublas, cublas / us[0],
                    dense / us[0]);
      };
      sweep("int4", s4s, d4s);
      sweep("int8", s8s, d8s);
      // bf16 activations (default block shape) and plain values.
      const auto bf16_row = [&](const char* name, const auto& views, const auto& dense_views) {
        const double us = time_us([&](int i) { lb::cuda::gemm_sparse24(xb, m, s.k, at(views, i), yb, s.n, nullptr, defaults); });
        const double dense = time_us([&](int i) { lb::cuda::gemm(xb, m, s.k, at(dense_views, i), yb, s.n, nullptr, defaults); });
        rows.push_back({name, "bf16", s.n, s.k, m, us, dense, cublas_bf, double(views[0].bytes())});
      };
      bf16_row("int4", s4s, d4s);
      bf16_row("int8", s8s, d8s);
      const double us_h = time_us([&](int i) { lb::cuda::gemm_sparse24(x, m, s.k, at(hs, i), y, s.n, nullptr, defaults); });
      rows.push_back({"fp16 values", "fp16", s.n, s.k, m, us_h, 0.0, cublas, double(hs[0].bytes())});
      const double us_b = time_us([&](int i) { lb::cuda::gemm_sparse24(xb, m, s.k, at(bs, i), yb, s.n, nullptr, defaults); });
      rows.push_back({"bf16 values", "bf16", s.n, s.k, m, us_b, 0.0, cublas_bf, double(bs[0].bytes())});
    }
    for (void* p : owned) cudaFree(p);
    cudaFree(w);
    cudaFree(wb);
    cudaFree(x);
    cudaFree(xb);
    cudaFree(y);
    cudaFree(yb);
  }
  cublasDestroy(handle);
  std::printf("\n| kept values | activations | N x K | M | 2:4 µs (default block shape) | weight GB/s | dense lowbit µs (same format, g128) | cuBLAS dense µs (same activations) | vs cuBLAS | vs dense lowbit |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const char* act : {"fp16", "bf16"})
    for (const row& r : rows) {
      if (r.act != act) continue;
      char dense[32] = "-", ratio[32] = "-";
      if (r.dense > 0) {
        std::snprintf(dense, sizeof dense, "%.1f", r.dense);
        std::snprintf(ratio, sizeof ratio, "%.2fx", r.dense / r.us);
      }
      std::printf("| %s | %s | %zu x %zu | %zu | %.1f | %.0f | %s | %.1f | %.2fx | %s |\n", r.format.c_str(), r.act.c_str(), r.n, r.k, r.m,
                  r.us, r.bytes / r.us * 1e-3, dense, r.cublas, r.cublas / r.us, ratio);
    }
  return 0;
}
