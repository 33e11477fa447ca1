// Checks lowbit::cuda::decode against the CPU library's decode (lowbit::attention::decode) on the
// same kv_cache contents: every GPU KV scheme (int8, uint8 + zero, int4, uint4 + zero, FP8 E4M3;
// fp16, float and bf16 scales), head_dim 64 and 128, 1 to 16 query heads per KV head, contiguous
// and paged caches (shuffled block tables), group sizes from head_dim / 4 to the whole vector, odd
// and empty lengths, one split, 64-token splits and the default. A plain checker (no GoogleTest);
// exits non-zero on any failure, printing seed and case. Outputs are poisoned (NaN) first.
//
// Also checked against a float64 decode of the dequantized cache (the same bound), so that a fault
// on the CPU side shows as such. Tolerance per output element e of query head j (float64 quantities
// of the dequantized cache, p the exact softmax weights): |gpu - cpu| <= (2^-8 + 4 ds) * sum_i p_i |v_ie| + 2^-10 |cpu|, where
// ds = 2^-10 * scale * max_i sum_e |q_e k_ie| bounds the score error from rounding q and K to fp16.
// 2^-8 covers P and V rounded to fp16 (2^-11 each) and the fp32 sums; 2^-10 |cpu| the fp16 output.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "decode_reference.hpp"
#include "lowbit/cuda.cuh"

namespace {

namespace lb = lowbit;
int failures = 0, cases = 0;

struct decode_case {
  std::size_t head_dim, kv_heads, group;  // group: query heads per KV head
  std::size_t page_tokens;                // 0: contiguous
  std::size_t group_size;                 // 0: whole head vector
  std::vector<std::size_t> lengths;
  std::size_t capacity;                   // contiguous
  float q_std;
};

template <class Scheme>
void check_case(const char* name, const decode_case& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::size_t batch = c.lengths.size(), d = c.head_dim, hkv = c.kv_heads, hq = hkv * c.group;
  lb::attention::kv_shape shape;
  shape.batch = batch;
  shape.kv_heads = hkv;
  shape.head_dim = d;
  std::vector<std::vector<uint32_t>> tables(batch);
  if (c.page_tokens) {
    std::size_t pages = 0;
    for (std::size_t n : c.lengths) pages += (n + c.page_tokens - 1) / c.page_tokens + 1;
    shape.page_tokens = c.page_tokens;
    shape.pages = pages;
    std::vector<uint32_t> pool(pages);
    std::iota(pool.begin(), pool.end(), 0u);
    std::shuffle(pool.begin(), pool.end(), rng);
    std::size_t next = 0;
    for (std::size_t b = 0; b < batch; ++b) {
      const std::size_t count = (c.lengths[b] + c.page_tokens - 1) / c.page_tokens + 1;
      tables[b].assign(pool.begin() + next, pool.begin() + next + count);
      next += count;
    }
  } else {
    shape.capacity = c.capacity;
  }
  lb::attention::kv_cache<Scheme> cache(shape, c.group_size);
  for (std::size_t b = 0; b < batch && c.page_tokens; ++b) cache.map_pages(b, tables[b].data(), tables[b].size());
  // Keys with a few large channels (as real keys have); values plain. Appended in pieces (a prefill,
  // then single tokens), as an engine would.
  for (std::size_t b = 0; b < batch; ++b) {
    const std::size_t n = c.lengths[b];
    std::vector<float> k(n * hkv * d), v(n * hkv * d);
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = normal(rng) * ((i % d) % 13 == 5 ? 4.0f : 1.0f);
    for (float& x : v) x = normal(rng);
    const std::size_t prefill = n - std::min<std::size_t>(n, 3);
    if (prefill) cache.append(b, k.data(), v.data(), prefill);
    for (std::size_t i = prefill; i < n; ++i) cache.append(b, k.data() + i * hkv * d, v.data() + i * hkv * d, 1);
  }
  std::vector<__half> q_half(batch * hq * d);
  std::vector<float> q(q_half.size());
  for (std::size_t i = 0; i < q.size(); ++i) {
    q_half[i] = __float2half(c.q_std * normal(rng));
    q[i] = __half2float(q_half[i]);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> ref(q.size());
  lowbit_test::cpu_decode(q.data(), cache, ref.data(), hq, scale);

  // Error bound terms from float64 (see the header comment).
  std::vector<double> bound(q.size(), 0.0), exact(q.size(), 0.0);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t j = 0; j < hq; ++j) {
      const std::size_t h = j / c.group, n = c.lengths[b];
      const float* qj = q.data() + (b * hq + j) * d;
      std::vector<double> s(n);
      double smax = -INFINITY, qk_max = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        double dot = 0.0, mag = 0.0;
        for (std::size_t e = 0; e < d; ++e) {
          const double kv = cache.keys().element(cache.row(b, h, i), e);
          dot += qj[e] * kv;
          mag += std::fabs(qj[e] * kv);
        }
        s[i] = dot * scale;
        smax = std::max(smax, s[i]);
        qk_max = std::max(qk_max, mag);
      }
      double sum = 0.0;
      for (double& x : s) sum += (x = std::exp(x - smax));
      const double ds = std::ldexp(1.0, -10) * scale * qk_max;
      for (std::size_t e = 0; e < d; ++e) {
        double b1 = 0.0, o = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
          const double v = cache.values().element(cache.row(b, h, i), e);
          b1 += s[i] / sum * std::fabs(v);
          o += s[i] / sum * v;
        }
        bound[(b * hq + j) * d + e] = (std::ldexp(1.0, -8) + 4.0 * ds) * b1;
        exact[(b * hq + j) * d + e] = o;
      }
    }

  const auto gpu_cache = lb::cuda::upload(cache);
  __half *dq = nullptr, *dout = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&dq, q_half.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&dout, q_half.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(dq, q_half.data(), q_half.size() * sizeof(__half), cudaMemcpyHostToDevice));
  lb::cuda::decode_workspace workspace;
  for (int split_tokens : {0, 64, 1 << 20}) {
    LOWBIT_CUDA_CHECK(cudaMemset(dout, 0xFF, q_half.size() * sizeof(__half)));  // NaN: unwritten outputs fail
    lb::cuda::decode_options options;
    options.split_tokens = split_tokens;
    lb::cuda::decode(dq, gpu_cache.view(), dout, hq, workspace, nullptr, options);
    LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<__half> out(q_half.size());
    LOWBIT_CUDA_CHECK(cudaMemcpy(out.data(), dout, out.size() * sizeof(__half), cudaMemcpyDeviceToHost));
    int bad = 0;
    double worst = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      // Against the CPU decode, and against float64 (which tells a CPU-side fault from a GPU one).
      const double got = __half2float(out[i]);
      for (const double want : {double(ref[i]), exact[i]}) {
        const double tol = bound[i] + std::ldexp(1.0, -10) * std::fabs(want);
        const double err = std::fabs(got - want);
        if (!(err <= tol)) {
          if (bad++ < 3)
            std::printf("  %s seed=%u split=%d: out[seq %zu][head %zu][%zu] = %g, %s %g (tol %g)\n", name, seed,
                        split_tokens, i / (hq * d), (i / d) % hq, i % d, got, want == exact[i] ? "float64" : "CPU",
                        want, tol);
        } else if (tol > 0) {
          worst = std::max(worst, err / tol);
        }
      }
    }
    ++cases;
    std::printf("%s %-11s d=%3zu hkv=%zu G=%2zu %s g=%3zu lengths=", bad ? "FAIL" : "ok  ", name, d, hkv, c.group,
                c.page_tokens ? "paged" : "contig", c.group_size ? c.group_size : d);
    for (std::size_t n : c.lengths) std::printf("%zu,", n);
    std::printf(" split=%d  worst err/tol %.3f%s\n", split_tokens, worst, bad ? "  <--" : "");
    if (bad) ++failures;
  }
  cudaFree(dq);
  cudaFree(dout);
}

template <class Scheme>
void check_scheme(const char* name, unsigned& seed) {
  const decode_case cases_[] = {
      {128, 2, 4, 0, 0, {1, 17, 1000}, 1024, 1.0f},
      {128, 1, 16, 32, 32, {300, 0, 129}, 0, 1.0f},
      {64, 2, 5, 16, 16, {77, 513, 2}, 0, 2.0f},
      {64, 3, 1, 0, 0, {250, 31, 111}, 250, 1.0f},
      {128, 2, 8, 0, 64, {2048, 5, 999}, 2050, 0.5f},
      {128, 2, 12, 64, 0, {640, 1601}, 0, 1.0f},
      // G <= 8 on pages of 64 and 32 tokens: a warp's 2 or 4 tiles copied together, or a page apart.
      {128, 2, 4, 64, 32, {130, 700}, 0, 1.0f},
      {64, 1, 8, 32, 0, {95, 33, 257}, 0, 1.0f},
  };
  for (const decode_case& c : cases_) check_case<Scheme>(name, c, seed++);
}

template <class F>
void expect_error(const char* what, F&& f) {
  ++cases;
  try {
    f();
  } catch (const lb::error&) {
    return;
  }
  ++failures;
  std::printf("FAIL %s was accepted\n", what);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 20261126u;
  std::printf("lowbit CUDA decode tests, seed %u\n", seed);
  namespace kv = lowbit_test::kv;
  try {
    check_scheme<kv::int8_f16>("int8", seed);
    check_scheme<kv::uint8z_f16>("uint8+zero", seed);
    check_scheme<kv::int4_f16>("int4", seed);
    check_scheme<kv::uint4z_f16>("uint4+zero", seed);
    check_scheme<kv::e4m3_f16>("fp8_e4m3", seed);
    check_scheme<kv::int8_f32>("int8 f32s", seed);
    check_scheme<kv::int4_bf16>("int4 bf16s", seed);

    // Argument checks throw lowbit::error.
    lb::attention::kv_shape s;
    s.batch = 1, s.kv_heads = 2, s.head_dim = 128, s.capacity = 32;
    lb::attention::kv_cache<kv::int8_f16> cache(s);
    std::vector<float> k(2 * 128, 0.5f);
    cache.append(0, k.data(), k.data(), 1);
    const auto gpu = lb::cuda::upload(cache);
    lb::cuda::decode_workspace ws;
    __half* buf = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&buf, 64 * 128 * sizeof(__half)));
    expect_error("34 query heads for 2 KV heads (17 a group)", [&] { lb::cuda::decode(buf, gpu.view(), buf + 32 * 128, 34, ws); });
    expect_error("3 query heads for 2 KV heads", [&] { lb::cuda::decode(buf, gpu.view(), buf + 32 * 128, 3, ws); });
    expect_error("split_tokens 100", [&] {
      lb::cuda::decode_options o;
      o.split_tokens = 100;
      lb::cuda::decode(buf, gpu.view(), buf + 32 * 128, 4, ws, nullptr, o);
    });
    expect_error("null q", [&] { lb::cuda::decode(nullptr, gpu.view(), buf, 4, ws); });
    expect_error("group_size 16 with head_dim 128", [&] {
      lb::attention::kv_cache<kv::int8_f16> c16(s, 16);
      (void)lb::cuda::upload(c16);
    });
    expect_error("head_dim 256", [&] {
      lb::attention::kv_shape s256 = s;
      s256.head_dim = 256;
      lb::attention::kv_cache<kv::int4_f16> c256(s256);
      (void)lb::cuda::upload(c256);
    });
    cudaFree(buf);
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 2;
  }
  std::printf("%s: %d cases, %d failed\n", failures ? "FAILED" : "PASSED", cases, failures);
  return failures ? 1 : 0;
}
