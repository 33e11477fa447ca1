// Checks lowbit::cuda::gemm against the float64 CPU reference (reference::gemm) on the same
// quantized matrix: every GPU format, fp16 and bf16 activations, M = 1, 3, 8, 9, 16 (the split-K
// kernel: M = 17, 24, 33, 48, 64, with the default split, none, and 2 or 3 splits on a reused
// workspace; 8 warps of 2 tiles and 16 of 1; on sm_90a M = 33..64 by default and 17, 40, 64 called
// directly: the wgmma kernel with 64-token blocks),
// M > 64 (the tiled kernel, gemm_large.cuh: M = 65, 80, 128, 129, 200, 257, 300, 513, 1000, and 2048 for
// uint4 + zero points; the default split and none / 3 splits on a workspace; 8 warps a block and 16
// (the mma.sync kernel); the default is the wgmma kernel on sm_90a (gemm_wgmma.cuh, not MXFP4), also
// called directly with 128 (none or 2 splits) and 256 tokens a block at M = 65, 129, 300, 513),
// shapes with N and K off the 16 x 64 tiles (and off its 128 x 128 blocks), group sizes 64 / 128 / per-channel, every block shape
// (NF4 / SF4 also with 12 warps, their default where 16 lose stages to the table). A plain checker (no GoogleTest:
// the GPU machine may lack it); prints every case and exits non-zero if any failed, printing seed
// and case. Usage: lowbit_test_cuda [seed] [large | wgmma | m16 | groups | chain] (large: only the M > 64 cases and the
// wgmma kernel's direct ones; wgmma: only the latter, M <= 64; m16: only the M <= 16 cases; groups: only
// those with groups of 3 and 6 chunks; chain: only the dependent-launch chains; e.g. under compute-sanitizer).
// Programmatic dependent launches (gemm_options::dependent_launch): chains of M <= 16 GEMMs
// (dependent_chain.cuh), bit for bit against the same chain launched plainly; see check_chain.
//
// Tolerance per output: |y - ref| <= 2^-10 |ref| + 2^-10 sum_k |x_k w_k|. The first term covers
// the fp16 output rounding (2^-11), the second the fp16 rounding of NF4 / SF4 table values and the
// fp32 tensor-core sums; integer, E2M1 and E4M3 weights are exact in fp16 (MXFP4's E8M0 scales
// multiply fp32 sums). The wgmma kernel folds the scale into each weight: one more fp16 (2^-11)
// or bf16 (2^-9) rounding of each product, inside the second term.
// bf16 (8 significant bits): |y - ref| <= 2^-8 |ref| + 2^-8 sum_k |x_k w_k|, the same argument
// with bf16's 2^-9 rounding of the output and of NF4 / SF4 table values (integers and E2M1
// values are exact in bf16 too); the reference sees the bf16 activations.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "act_types.cuh"
#include "dependent_chain.cuh"
#include "lowbit/cuda.cuh"
#include "lowbit/kernels/reference/gemm.hpp"
#include "lowbit/quant/quantize.hpp"

namespace {

int failures = 0, cases = 0;
bool large_only = false;  // only the M > 64 cases
bool wgmma_only = false;  // only the wgmma kernel's direct cases at M <= 64
bool groups_only = false;  // only the M <= 16 cases with groups of 3 and 6 chunks (e.g. for compute-sanitizer)
bool m16_only = false;     // only the M <= 16 cases (the formats' and the groups of 3 and 6 chunks)
bool chain_only = false;   // only the dependent-launch chains

using lowbit_test::from_act;
using lowbit_test::to_act;

template <class Scheme, class T = __half>
void check_case(const char* name, std::size_t n, std::size_t k, std::size_t group, std::size_t m, int per_block,
                unsigned seed, int warps = 0, int split_k = 0, lowbit::cuda::gemm_workspace* workspace = nullptr,
                int wgmma_tokens = 0, bool aligned_y = false) {
  // wgmma_tokens 64 / 128 / 256: the sm_90a wgmma kernel with that block width, called directly (skipped
  // where the device has no sm_90a code; not MXFP4). aligned_y: y's rows 16-byte aligned (ldy = n
  // rounded up to 8, + 8: the 256-token kernel's 16-byte stores), its padding checked untouched;
  // else ldy = n + 3.
  if constexpr (lowbit::cuda::gpu_scheme<Scheme>::kind == lowbit::cuda::dequant_kind::mxfp4) {
    if (wgmma_tokens) return;
  }
  if (wgmma_tokens && !lowbit::cuda::detail::wgmma_usable()) return;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(n * k);
  for (float& v : w) v = normal(rng) * 0.05f;
  lowbit::quant_options options;
  options.group_size = group;
  const auto q = lowbit::quantize<Scheme>(w.data(), n, k, k, options);
  const auto packed = lowbit::cuda::pack(q.view());

  const std::size_t ldx = (k + 7) / 8 * 8, ldy = aligned_y ? (n + 7) / 8 * 8 + 8 : n + 3;
  constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  std::vector<T> x_half(m * ldx, to_act<T>(0.0f));
  std::vector<float> x(m * k);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t c = 0; c < k; ++c) {
      x_half[i * ldx + c] = to_act<T>(normal(rng));
      x[i * k + c] = from_act(x_half[i * ldx + c]);  // the reference sees the rounded activations
    }
  T *dx = nullptr, *dy = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&dx, x_half.size() * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&dy, m * ldy * sizeof(T)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(dx, x_half.data(), x_half.size() * sizeof(T), cudaMemcpyHostToDevice));
  LOWBIT_CUDA_CHECK(cudaMemset(dy, 0xFF, m * ldy * sizeof(T)));  // NaN: unwritten outputs fail
  lowbit::cuda::gemm_options go;
  go.tiles_per_block = per_block;
  go.warps = warps;
  go.split_k = split_k;
  go.workspace = workspace;
  const auto run = [&] {
    if constexpr (lowbit::cuda::gpu_scheme<Scheme>::kind != lowbit::cuda::dequant_kind::mxfp4) {
      namespace ld = lowbit::cuda::detail;
      if (wgmma_tokens == 64) return ld::gemm_wgmma_with<64, 6>(dx, int(m), int(ldx), packed.view(), dy, int(ldy), nullptr, go);
      if (wgmma_tokens == 128) return ld::gemm_wgmma_with<128, 6>(dx, int(m), int(ldx), packed.view(), dy, int(ldy), nullptr, go);
      if (wgmma_tokens == 256) return ld::gemm_wgmma_with<256, 5>(dx, int(m), int(ldx), packed.view(), dy, int(ldy), nullptr, go);
    }
    lowbit::cuda::gemm(dx, m, ldx, packed.view(), dy, ldy, nullptr, go);
  };
  run();
  if (workspace) {  // again on the same workspace: its counters must be back at zero
    LOWBIT_CUDA_CHECK(cudaMemset(dy, 0xFF, m * ldy * sizeof(T)));
    run();
  }
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> y(m * ldy);
  LOWBIT_CUDA_CHECK(cudaMemcpy(y.data(), dy, y.size() * sizeof(T), cudaMemcpyDeviceToHost));
  cudaFree(dx);
  cudaFree(dy);

  const auto ref = lowbit::reference::gemm(lowbit::matrix_view<const float>(x.data(), m, k), q.view());
  double worst = 0.0;
  int bad = 0;
  if (aligned_y && (bad = lowbit_test::padding_written(y, m, n, ldy)))  // the padding past n keeps the NaN fill
    std::printf("  %s n=%zu m=%zu seed=%u: %d outputs past n written\n", name, n, m, seed, bad);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const double got = from_act(y[i * ldy + j]), want = ref.y[i * n + j];
      const double tol = std::ldexp(1.0, bf16 ? -8 : -10) * (std::fabs(want) + ref.magnitude[i * n + j]);
      const double err = std::fabs(got - want);
      if (!(err <= tol)) {
        if (bad++ < 3)
          std::printf("  %s n=%zu k=%zu g=%zu m=%zu tiles/block=%d seed=%u: y(%zu, %zu) = %g, reference %g (tol %g)\n",
                      name, n, k, group, m, per_block, seed, i, j, got, want, tol);
      }
      if (std::isfinite(got)) worst = std::fmax(worst, err / (tol > 0 ? tol : 1.0));
    }
  ++cases;
  if (bad) {
    ++failures;
    std::printf("FAIL %s%s n=%zu k=%zu g=%zu m=%zu tiles/block=%d warps=%d split_k=%d wgmma=%d seed=%u: %d of %zu outputs off\n",
                name, bf16 ? "/bf16" : "", n, k, group, m, per_block, warps, split_k, wgmma_tokens, seed, bad, m * n);
  } else {
    std::printf("ok   %-10s %s n=%5zu k=%5zu g=%5zu m=%2zu tiles/block=%d warps=%2d split_k=%d wgmma=%d  worst err/tol %.3f\n",
                name, bf16 ? "bf16" : "fp16", n, k, group, m, per_block, warps, split_k, wgmma_tokens, worst);
  }
}

// Programmatic dependent launches: lowbit_test::run_chain's rounds (a slow kernel rewriting x, then
// y1 = x · W0ᵀ, y2 = y1 · W1ᵀ, y3 = y2 · W2ᵀ with W0 256 x k, W1 384 x 256, W2 256 x 384, g64),
// 12 rounds, with gemm_options::dependent_launch against the same chain launched plainly, bit for
// bit (a GEMM reading x or y before its griddepcontrol.wait would see an old or unfinished one),
// and the last round's three products against the float64 reference (check_case's tolerance).
// tiles_per_block / warps as gemm_options (0: the default); k = 520: W0's last chunk partial (the
// KTail kernel).
template <class Scheme, class T = __half>
void check_chain(const char* name, std::size_t m, int per_block, int warps, std::size_t k, unsigned seed) {
  namespace lc = lowbit::cuda;
  constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  const std::size_t n1 = 256, n2 = 384;
  const std::size_t rows[3] = {n1, n2, n1}, cols[3] = {k, n1, n2};
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<lowbit::quantized_matrix<Scheme>> weights;
  std::vector<lc::packed_weights<Scheme>> packed;
  for (int j = 0; j < 3; ++j) {
    std::vector<float> w(rows[j] * cols[j]);
    for (float& v : w) v = normal(rng) * 0.05f;
    lowbit::quant_options options;
    options.group_size = 64;
    weights.push_back(lowbit::quantize<Scheme>(w.data(), rows[j], cols[j], cols[j], options));
    packed.push_back(lc::pack(weights.back().view()));
  }
  const auto gemm = [&](int j, const T* in, T* out, bool dependent) {
    const auto view = packed[static_cast<std::size_t>(j)].view();
    lc::gemm_options go;
    go.tiles_per_block = per_block;
    go.warps = warps;
    go.dependent_launch = dependent;
    lc::gemm(in, m, view.cols, view, out, view.rows, nullptr, go);
  };
  constexpr int rounds = 12;
  const auto plain_run = lowbit_test::run_chain<T>(gemm, m, k, n1, n2, rounds, false, seed);
  const auto chained = lowbit_test::run_chain<T>(gemm, m, k, n1, n2, rounds, true, seed);
  int bad = 0;
  double worst = 0.0;
  const std::vector<T>* ins[3] = {&chained.x, &chained.y1, &chained.y2};
  const std::vector<T>* outs[3] = {&chained.y1, &chained.y2, &chained.y3};
  for (int j = 0; j < 3; ++j) {
    std::vector<float> in(m * cols[j]);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = from_act((*ins[j])[i]);
    const auto ref = lowbit::reference::gemm(lowbit::matrix_view<const float>(in.data(), m, cols[j]), weights[j].view());
    for (std::size_t i = 0; i < m * rows[j]; ++i) {
      const double got = from_act((*outs[j])[i]), want = ref.y[i];
      const double tol = std::ldexp(1.0, bf16 ? -8 : -10) * (std::fabs(want) + ref.magnitude[i]), err = std::fabs(got - want);
      if (!(err <= tol) && bad++ < 3)
        std::printf("  chain %s/%s m=%zu GEMM %d: y[%zu] = %g, reference %g (tol %g)\n", name, bf16 ? "bf16" : "fp16", m, j, i, got,
                    want, tol);
      if (std::isfinite(got)) worst = std::fmax(worst, err / (tol > 0 ? tol : 1.0));
    }
  }
  char what[160];
  std::snprintf(what, sizeof what, "%-10s %s m=%2zu k=%zu tiles/block=%d warps=%2d", name, bf16 ? "bf16" : "fp16", m, k, per_block,
                warps);
  ++cases;
  if (!lowbit_test::chain_passed(what, seed, chained == plain_run, bad, worst)) ++failures;
}

// The M <= 16 kernel in dependent chains at M = 1, 8, 12, 16 (1 and 2 x tiles): the default block
// shape (2 tiles, 16 warps here), also with W0's K = 520 (KTail);
// 4 tiles x 16 warps (x staged) and 1 tile x 8 warps at M = 1, 16; codebook formats 12 warps.
template <class Scheme, class T = __half>
void check_chains(const char* name, unsigned& seed) {
  for (std::size_t m : {1, 8, 12, 16}) {
    check_chain<Scheme, T>(name, m, 0, 0, 512, seed++);
    check_chain<Scheme, T>(name, m, 0, 8, 520, seed++);
    if (m == 1 || m == 16) {
      check_chain<Scheme, T>(name, m, 4, 16, 512, seed++);
      check_chain<Scheme, T>(name, m, 1, 8, 512, seed++);
      if (lowbit::cuda::gpu_scheme<Scheme>::kind == lowbit::cuda::dequant_kind::table) check_chain<Scheme, T>(name, m, 4, 12, 512, seed++);
    }
  }
}

template <class Scheme, class T = __half>
void check_format(const char* name, unsigned& seed) {
  struct shape { std::size_t n, k, group; };
  constexpr bool mx = lowbit::cuda::gpu_scheme<Scheme>::mx;  // MX blocks are 32 wide, K off 64 and 32 too
  const shape shapes[] = {{64, 256, mx ? 32u : 128u}, {37, 200, mx ? 32u : 200u}, {130, 320, mx ? 32u : 128u},
                          {48, 1000, mx ? 32u : 64u}, {256, 2048, mx ? 32u : 128u}};
  lowbit::cuda::gemm_workspace workspace;
  // M > 64 (the tiled kernel): N off the 128-row blocks (37, 130, 300), K off 64 (200, 1000), group
  // sizes 64 / 128 / per-channel; each M on two shapes, M = 65 and 257 also with no split and 3
  // splits on a reused workspace.
  const shape large_shapes[] = {{130, 320, mx ? 32u : 128u}, {37, 200, mx ? 32u : 200u}, {300, 576, mx ? 32u : 64u},
                                {48, 1000, mx ? 32u : 64u}};
  int turn = 0;
  for (std::size_t m : {65, 80, 128, 129, 200, 257, 300, 513, 1000}) {
    if (wgmma_only || m16_only) break;
    for (int i = 0; i < 2; ++i, ++turn) {
      const shape& s = large_shapes[turn % 4];
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++);
    }
    // The wgmma kernel's two block widths directly (the default picks 256 only for many blocks).
    if (m == 65 || m == 129 || m == 300 || m == 513) {
      const shape& s = large_shapes[turn % 4];
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 0, 0, nullptr, 256);
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 0, 0, nullptr, 256, true);  // 16-byte stores
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 0, m == 129 ? 2 : 1, &workspace, 128);
    }
    if (m == 65 || m == 257) {
      const shape& s = large_shapes[m == 65 ? 2 : 0];
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 0, 1);
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 8, 3, &workspace);
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 16);  // 16 warps a block
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 16, 2, &workspace);
    }
  }
  // The wgmma kernel's 64-token blocks (the default at M = 33..64 on sm_90a) directly, also at M <= 32,
  // unsplit and split.
  for (std::size_t m : {17, 40, 64}) {
    if (m16_only) break;
    const shape& s = large_shapes[turn++ % 4];
    check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 0, m == 40 ? 3 : 1, &workspace, 64);
  }
  if (large_only || wgmma_only) return;
  for (const shape& s : shapes)
    for (std::size_t m : {1, 3, 8, 9, 16}) {
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++);  // the default block shape
      if (m == 1 || m == 16) {
        check_case<Scheme, T>(name, s.n, s.k, s.group, m, 1, seed++);
        if (((s.n + 15) / 16) % 2 == 0) check_case<Scheme, T>(name, s.n, s.k, s.group, m, 2, seed++);
        check_case<Scheme, T>(name, s.n, s.k, s.group, m, 1, seed++, 8);
        check_case<Scheme, T>(name, s.n, s.k, s.group, m, 1, seed++, 16);
        if (((s.n + 15) / 16) % 4 == 0 && s.k % 64 == 0) {
          check_case<Scheme, T>(name, s.n, s.k, s.group, m, 4, seed++, 16);
          check_case<Scheme, T>(name, s.n, s.k, s.group, m, 4, seed++, 8);
        }
        if (lowbit::cuda::gpu_scheme<Scheme>::kind == lowbit::cuda::dequant_kind::table) {  // 12 warps
          check_case<Scheme, T>(name, s.n, s.k, s.group, m, 1, seed++, 12);
          if (((s.n + 15) / 16) % 2 == 0) check_case<Scheme, T>(name, s.n, s.k, s.group, m, 2, seed++, 12);
          if (((s.n + 15) / 16) % 4 == 0 && s.k % 64 == 0) check_case<Scheme, T>(name, s.n, s.k, s.group, m, 4, seed++, 12);
        }
      }
    }
  if (m16_only) return;
  // M = 17..64 (the split-K kernel): the default split (for these N, about one chunk a block), none,
  // and 3 (2) splits twice on one workspace; 8 warps of 2 tiles and 16 of 1.
  for (const shape& s : shapes)
    for (std::size_t m : {17, 24, 33, 48, 64}) {
      check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++);
      if (m == 17 || m == 64) {
        check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 0, 1);
        check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 0, 3, &workspace);
        check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 16);
        check_case<Scheme, T>(name, s.n, s.k, s.group, m, 0, seed++, 16, 2, &workspace);
      }
    }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 20261126u;
  large_only = argc > 2 && std::string(argv[2]) == "large";
  wgmma_only = argc > 2 && std::string(argv[2]) == "wgmma";
  groups_only = argc > 2 && std::string(argv[2]) == "groups";
  m16_only = argc > 2 && std::string(argv[2]) == "m16";
  chain_only = argc > 2 && std::string(argv[2]) == "chain";
  std::printf("lowbit CUDA gemm tests, seed %u\n", seed);
  namespace lb = lowbit;
  try {
    if (!large_only && !wgmma_only && !groups_only) {  // dependent-launch chains (their own seeds: the other cases' stay as they were)
      unsigned chain_seed = seed ^ 0x5eedu;
      check_chains<lb::scheme<lb::uint4, lb::fp16, true>>("uint4+zero", chain_seed);
      check_chains<lb::scheme<lb::nf4, lb::fp16>>("nf4", chain_seed);
      check_chains<lb::scheme<lb::uint4, lb::fp16, true>, __nv_bfloat16>("uint4+zero", chain_seed);
      check_chains<lb::scheme<lb::int8, lb::fp16>, __nv_bfloat16>("int8", chain_seed);
    }
    if (chain_only) {
      std::printf("%s: %d cases, %d failed\n", failures ? "FAILED" : "PASSED", cases, failures);
      return failures ? 1 : 0;
    }
    // M <= 16 with groups of 3 and 6 chunks (192 columns; per channel at K = 384, K % 64 == 0): the
    // group ends inside and at the end of the warps' two-chunk units, 4 / 2 / 1 tiles a block, 16 warps.
    for (std::size_t group : {192, 384})
      for (std::size_t m : {1, 5, 16})
        for (int per_block : {4, 2, 1})
          check_case<lb::scheme<lb::uint4, lb::fp16, true>>("uint4+zero", 64, 384, group, m, per_block, seed++, 16);
    if (groups_only) {
      std::printf("%s: %d cases, %d failed\n", failures ? "FAILED" : "PASSED", cases, failures);
      return failures ? 1 : 0;
    }
    check_format<lb::scheme<lb::uint4, lb::fp16, true>>("uint4+zero", seed);
    check_format<lb::scheme<lb::int4, lb::fp16>>("int4", seed);
    check_format<lb::scheme<lb::nf4, lb::fp16>>("nf4", seed);
    check_format<lb::scheme<lb::sf4, lb::fp16>>("sf4", seed);
    check_format<lb::scheme<lb::fp4_e2m1, lb::fp16>>("fp4_e2m1", seed);
    check_format<lb::scheme<lb::int8, lb::fp16>>("int8", seed);
    check_format<lb::scheme<lb::uint8, lb::fp16, true>>("uint8+zero", seed);
    check_format<lb::scheme<lb::fp8_e4m3, lb::fp16>>("fp8_e4m3", seed);
    check_format<lb::mx::fp4>("mxfp4", seed);
    using bf = __nv_bfloat16;
    check_format<lb::scheme<lb::uint4, lb::fp16, true>, bf>("uint4+zero", seed);
    check_format<lb::scheme<lb::int4, lb::fp16>, bf>("int4", seed);
    check_format<lb::scheme<lb::nf4, lb::fp16>, bf>("nf4", seed);
    check_format<lb::scheme<lb::sf4, lb::fp16>, bf>("sf4", seed);
    check_format<lb::scheme<lb::fp4_e2m1, lb::fp16>, bf>("fp4_e2m1", seed);
    check_format<lb::scheme<lb::int8, lb::fp16>, bf>("int8", seed);
    check_format<lb::scheme<lb::uint8, lb::fp16, true>, bf>("uint8+zero", seed);
    check_format<lb::scheme<lb::fp8_e4m3, lb::fp16>, bf>("fp8_e4m3", seed);
    check_format<lb::mx::fp4, bf>("mxfp4", seed);
    // One larger M (several 128-row x blocks in each block column).
    if (!m16_only) check_case<lb::scheme<lb::uint4, lb::fp16, true>>("uint4+zero", 384, 512, 128, 2048, 0, seed++);
    // 17 weight blocks: a full column of 16 and a last column of one.
    if (!m16_only) check_case<lb::scheme<lb::uint4, lb::fp16, true>>("uint4+zero", 2100, 256, 128, 300, 0, seed++);
    // Argument checks throw lowbit::error.
    bool threw = false;
    try {
      const std::vector<float> w(16 * 96, 0.5f);
      lb::quant_options o;
      o.group_size = 32;
      (void)lb::cuda::pack(lb::quantize<lb::scheme<lb::uint4, lb::fp16, true>>(w.data(), 16, 96, 96, o).view());
    } catch (const lb::error&) {
      threw = true;
    }
    ++cases;
    if (!threw) { ++failures; std::printf("FAIL group_size 32 was accepted\n"); }
    threw = false;
    try {
      const std::vector<float> w(16 * 128, 0.5f);
      const auto packed = lb::cuda::pack(lb::quantize<lb::scheme<lb::int4, lb::fp16>>(w.data(), 16, 128, 128, {}).view());
      lb::cuda::gemm(static_cast<const __half*>(nullptr), 0, 128, packed.view(), static_cast<__half*>(nullptr), 16);
    } catch (const lb::error&) {
      threw = true;
    }
    ++cases;
    if (!threw) { ++failures; std::printf("FAIL m=0 was accepted\n"); }
    threw = false;
    try {  // M at the limit (2^31 rows)
      const std::vector<float> w(16 * 128, 0.5f);
      const auto packed = lb::cuda::pack(lb::quantize<lb::scheme<lb::int4, lb::fp16>>(w.data(), 16, 128, 128, {}).view());
      lb::cuda::gemm(static_cast<const __half*>(nullptr), std::size_t(1) << 31, 128, packed.view(), static_cast<__half*>(nullptr), 16);
    } catch (const lb::error&) {
      threw = true;
    }
    ++cases;
    if (!threw) { ++failures; std::printf("FAIL m=2^31 was accepted\n"); }
  }
  catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 2;
  }
  std::printf("%s: %d cases, %d failed\n", failures ? "FAILED" : "PASSED", cases, failures);
  return failures ? 1 : 0;
}
