// Checks lowbit::cuda::decode against the CPU library's decode (lowbit::attention::decode) on the
// same kv_cache contents: every GPU KV scheme (int8, uint8 + zero, int4, uint4 + zero, FP8 E4M3;
// fp16, float and bf16 scales), head_dim 64, 80, 96, 128 and 256, 1 to 16 query heads per KV head, contiguous
// and paged caches (shuffled block tables), group sizes from head_dim / 4 to the whole vector, odd
// and empty lengths, one split, 64-token splits and the default. A plain checker (no GoogleTest);
// exits non-zero on any failure, printing seed and case. Arguments: [seed] [scheme name, e.g. int4:
// its decode cases only, for compute-sanitizer]. Outputs are poisoned (NaN) first. Each
// case runs with fp16 and with bf16 q / out (q values that both types hold exactly).
//
// cuda::append: for every scheme, caches built by GPU appends (empty device_kv_cache, contiguous
// and paged, 3 to 70 sequences with different token counts a round, prefills and single tokens,
// fp16 and bf16 inputs, a padded token stride, rows of zeros / signed zeros / tied extremes) are
// compared byte for byte (codes, scales, zero points, lengths) with the CPU kv_cache's appends of
// the same inputs, and decode over them must equal decode over the uploaded CPU cache bit for bit.
// Overflow, bad sequences and bad block tables must be lowbit::errors that change nothing.
//
// Also checked against a float64 decode of the dequantized cache (the same bound), so that a fault
// on the CPU side shows as such. Tolerance per output element e of query head j (float64 quantities
// of the dequantized cache, p the exact softmax weights): |gpu - cpu| <= (2^-8 + 4 ds) * sum_i p_i |v_ie| + 2^-10 |cpu|, where
// ds = 2^-10 * scale * max_i sum_e |q_e k_ie| bounds the score error from rounding q and K to fp16
// (and covers the integer keys' 16-bit q: decode.cuh's numerics note).
// 2^-8 covers P and V rounded to fp16 (2^-11 each) and the fp32 sums; 2^-10 |cpu| the fp16 output.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include <cuda_bf16.h>

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
  // q rounded to bf16 (and 0 below 2^-14), so that fp16 and bf16 hold it exactly: the fp16 and
  // bf16 decodes share the reference.
  std::vector<__half> q_half(batch * hq * d);
  std::vector<__nv_bfloat16> q_bf16(q_half.size());
  std::vector<float> q(q_half.size());
  for (std::size_t i = 0; i < q.size(); ++i) {
    float x = __bfloat162float(__float2bfloat16(c.q_std * normal(rng)));
    if (std::fabs(x) < 0x1p-14f) x = 0.0f;
    q_half[i] = __float2half(x);
    q_bf16[i] = __float2bfloat16(x);
    q[i] = x;
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
  __nv_bfloat16 *dq16 = nullptr, *dout16 = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&dq, q_half.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&dout, q_half.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&dq16, q_half.size() * sizeof(__nv_bfloat16)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&dout16, q_half.size() * sizeof(__nv_bfloat16)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(dq, q_half.data(), q_half.size() * sizeof(__half), cudaMemcpyHostToDevice));
  LOWBIT_CUDA_CHECK(cudaMemcpy(dq16, q_bf16.data(), q_bf16.size() * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice));
  lb::cuda::decode_workspace workspace;
  for (int split_tokens : {0, 64, 1 << 20})
  for (const bool bf16_io : {false, true}) {
    // NaN: unwritten outputs fail.
    LOWBIT_CUDA_CHECK(cudaMemset(dout, 0xFF, q_half.size() * sizeof(__half)));
    LOWBIT_CUDA_CHECK(cudaMemset(dout16, 0xFF, q_half.size() * sizeof(__nv_bfloat16)));
    lb::cuda::decode_options options;
    options.split_tokens = split_tokens;
    if (bf16_io) lb::cuda::decode(dq16, gpu_cache.view(), dout16, hq, workspace, nullptr, options);
    else lb::cuda::decode(dq, gpu_cache.view(), dout, hq, workspace, nullptr, options);
    LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> out(q_half.size());
    if (bf16_io) {
      std::vector<__nv_bfloat16> raw(q_half.size());
      LOWBIT_CUDA_CHECK(cudaMemcpy(raw.data(), dout16, raw.size() * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost));
      for (std::size_t i = 0; i < raw.size(); ++i) out[i] = __bfloat162float(raw[i]);
    } else {
      std::vector<__half> raw(q_half.size());
      LOWBIT_CUDA_CHECK(cudaMemcpy(raw.data(), dout, raw.size() * sizeof(__half), cudaMemcpyDeviceToHost));
      for (std::size_t i = 0; i < raw.size(); ++i) out[i] = __half2float(raw[i]);
    }
    int bad = 0;
    double worst = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      // Against the CPU decode, and against float64 (which tells a CPU-side fault from a GPU one).
      const double got = out[i];
      for (const double want : {double(ref[i]), exact[i]}) {
        // The output's rounding: fp16 2^-11 (2^-10 allowed), bf16 2^-9 (2^-8 allowed).
        const double tol = bound[i] + std::ldexp(1.0, bf16_io ? -8 : -10) * std::fabs(want);
        const double err = std::fabs(got - want);
        if (!(err <= tol)) {
          if (bad++ < 3)
            std::printf("  %s%s seed=%u split=%d: out[seq %zu][head %zu][%zu] = %g, %s %g (tol %g)\n", name, bf16_io ? " bf16 q/out" : "", seed,
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
    std::printf(" split=%d %s worst err/tol %.3f%s\n", split_tokens, bf16_io ? "bf16" : "fp16", worst, bad ? "  <--" : "");
    if (bad) ++failures;
  }
  cudaFree(dq);
  cudaFree(dout);
  cudaFree(dq16);
  cudaFree(dout16);
}

const char* only_scheme = nullptr;  // argv[2]: the decode cases of this scheme only (for compute-sanitizer)

template <class Scheme>
void check_scheme(const char* name, unsigned& seed) {
  if (only_scheme && std::strcmp(name, only_scheme) != 0) return;
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
      // head_dim 256 (stages of 2 tiles for 4-bit codes too): contiguous; paged with groups of 64
      // and 16 query heads a KV head; paged on 64-token pages, groups of 128.
      {256, 2, 4, 0, 0, {1, 300, 97}, 320, 1.0f},
      {256, 1, 16, 32, 64, {150, 0, 513}, 0, 1.0f},
      {256, 2, 2, 64, 128, {700, 65}, 0, 0.5f},
      // head_dim 80 and 96 (codes read in 4-code steps): whole vectors, every group size (a quarter,
      // a half), G = 1, 4, 5, 12, contiguous and paged.
      {80, 2, 4, 0, 0, {1, 300, 97}, 320, 1.0f},
      {80, 1, 8, 16, 20, {150, 0, 513}, 0, 1.0f},
      {80, 2, 12, 64, 40, {640, 161}, 0, 1.0f},
      {96, 2, 5, 32, 24, {700, 65, 33}, 0, 1.0f},
      {96, 3, 1, 0, 48, {250, 31}, 250, 2.0f},
      // Whole vectors at 96 on 16-token pages (signed 4-bit: keys on the integer tensor cores).
      {96, 2, 4, 16, 0, {300, 47}, 0, 1.0f},
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

// ---- cuda::append: GPU appends against the CPU cache's appends of the same fp16 / bf16 inputs ----

struct append_round {
  std::vector<std::size_t> seqs, counts;
};
struct append_case {
  std::size_t batch, head_dim, kv_heads, group_size;  // group_size 0: whole head vector
  std::size_t capacity;                               // contiguous (page_tokens 0)
  std::size_t page_tokens, pages_per_seq;             // paged
  bool bf16_input;
  std::size_t stride_pad;  // token_stride = kv_heads x head_dim + stride_pad
  std::vector<append_round> rounds;
};

/// Row r of a device buffer of rows x row_size bytes, downloaded whole.
std::vector<uint8_t> download(const void* p, std::size_t bytes) {
  std::vector<uint8_t> h(bytes);
  LOWBIT_CUDA_CHECK(cudaMemcpy(h.data(), p, bytes, cudaMemcpyDeviceToHost));
  return h;
}

/// A token-head row of K or V: normal values (keys with large channels), and rows that test the
/// quantizer's corners: all zeros, signed zeros, an exact +m / -m tie for the extreme (the first
/// one wins on the CPU), a single nonzero value.
float input_value(std::mt19937& rng, std::size_t row_kind, std::size_t e, std::size_t d, bool key) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  switch (row_kind % 11) {
    case 0: return 0.0f;
    case 1: return (e % 3 == 0) ? -0.0f : normal(rng);
    case 2: return e == 5 ? -9.5f : (e == d - 3 ? 9.5f : normal(rng));   // tie, negative first
    case 3: return e == 2 ? 9.5f : (e == d / 2 + 1 ? -9.5f : normal(rng));  // tie, positive first
    case 4: return e == d / 3 ? -3.0f : 0.0f;
    default: return normal(rng) * (key && (e % 13 == 5) ? 4.0f : 1.0f);
  }
}

template <class Scheme>
void check_append(const char* name, const append_case& c, unsigned seed) {
  std::mt19937 rng(seed);
  using scale_type = typename Scheme::scale_type;
  const std::size_t B = c.batch, d = c.head_dim, hkv = c.kv_heads, row = hkv * d, stride = row + c.stride_pad;
  const std::size_t g = c.group_size ? c.group_size : d, groups = d / g;
  lb::attention::kv_shape shape;
  shape.batch = B;
  shape.kv_heads = hkv;
  shape.head_dim = d;
  std::vector<std::vector<uint32_t>> tables(B);
  if (c.page_tokens) {
    shape.page_tokens = c.page_tokens;
    shape.pages = B * c.pages_per_seq + 2;
    shape.capacity = c.page_tokens * (c.pages_per_seq + 1);  // the device tables' width
    std::vector<uint32_t> pool(shape.pages);
    std::iota(pool.begin(), pool.end(), 0u);
    std::shuffle(pool.begin(), pool.end(), rng);
    for (std::size_t b = 0; b < B; ++b) tables[b].assign(pool.begin() + b * c.pages_per_seq, pool.begin() + (b + 1) * c.pages_per_seq);
  } else {
    shape.capacity = c.capacity;
  }
  lb::attention::kv_cache<Scheme> cpu(shape, c.group_size);
  lb::cuda::device_kv_cache<Scheme> gpu(shape, c.group_size);
  for (std::size_t b = 0; b < B && c.page_tokens; ++b) {
    cpu.map_pages(b, tables[b].data(), tables[b].size());
    gpu.map_pages(b, tables[b].data(), tables[b].size());
  }
  cudaStream_t stream = nullptr;
  LOWBIT_CUDA_CHECK(cudaStreamCreate(&stream));
  int bad = 0;
  std::size_t row_kind = seed;
  for (const append_round& r : c.rounds) {
    std::size_t total = 0;
    for (std::size_t n : r.counts) total += n;
    // Inputs rounded to the input type; the CPU appends their float values.
    std::vector<uint16_t> kbits(std::max<std::size_t>(total, 1) * stride, 0x7e00), vbits(kbits.size(), 0x7e00);  // NaN padding
    std::vector<float> kf(total * row), vf(total * row);
    for (std::size_t t = 0; t < total; ++t)
      for (std::size_t h = 0; h < hkv; ++h) {
        const std::size_t kind_k = row_kind++, kind_v = row_kind++;
        for (std::size_t e = 0; e < d; ++e)
          for (int which = 0; which < 2; ++which) {
            const float x = input_value(rng, which ? kind_v : kind_k, e, d, which == 0);
            uint16_t bits;
            float rounded;
            if (c.bf16_input) {
              const __nv_bfloat16 y = __float2bfloat16(x);
              std::memcpy(&bits, &y, 2);
              rounded = __bfloat162float(y);
            } else {
              const __half y = __float2half(x);
              std::memcpy(&bits, &y, 2);
              rounded = __half2float(y);
            }
            (which ? vbits : kbits)[t * stride + h * d + e] = bits;
            (which ? vf : kf)[t * row + h * d + e] = rounded;
          }
      }
    std::size_t first = 0;
    for (std::size_t i = 0; i < r.seqs.size(); ++i) {
      if (r.counts[i]) cpu.append(r.seqs[i], kf.data() + first * row, vf.data() + first * row, r.counts[i]);
      first += r.counts[i];
    }
    uint16_t *dk = nullptr, *dv = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&dk, kbits.size() * 2));
    LOWBIT_CUDA_CHECK(cudaMalloc(&dv, vbits.size() * 2));
    LOWBIT_CUDA_CHECK(cudaMemcpy(dk, kbits.data(), kbits.size() * 2, cudaMemcpyHostToDevice));
    LOWBIT_CUDA_CHECK(cudaMemcpy(dv, vbits.data(), vbits.size() * 2, cudaMemcpyHostToDevice));
    const std::size_t ts = c.stride_pad ? stride : 0;
    if (c.bf16_input)
      lb::cuda::append(gpu, reinterpret_cast<const __nv_bfloat16*>(dk), reinterpret_cast<const __nv_bfloat16*>(dv),
                       r.seqs.data(), r.counts.data(), r.seqs.size(), stream, ts);
    else
      lb::cuda::append(gpu, reinterpret_cast<const __half*>(dk), reinterpret_cast<const __half*>(dv), r.seqs.data(),
                       r.counts.data(), r.seqs.size(), stream, ts);
    LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
    cudaFree(dk);
    cudaFree(dv);
  }

  // Byte for byte: every held token's codes, scales and zero points; the lengths (device, mirror).
  const auto& view = gpu.view();
  const std::size_t rows = c.page_tokens ? shape.pages * hkv * c.page_tokens : B * hkv * view.capacity;
  const std::size_t row_bytes = d * Scheme::bits / 8, scale_bytes = groups * sizeof(scale_type);
  const std::vector<uint8_t> lengths = download(view.lengths, B * sizeof(int));
  for (std::size_t b = 0; b < B; ++b) {
    int n = 0;
    std::memcpy(&n, lengths.data() + b * sizeof(int), sizeof(int));
    if (std::size_t(n) != cpu.length(b) || gpu.length(b) != cpu.length(b)) {
      if (bad++ < 3) std::printf("  %s seed=%u: sequence %zu length %d (mirror %zu), CPU %zu\n", name, seed, b, n, gpu.length(b), cpu.length(b));
    }
  }
  for (int part = 0; part < 2; ++part) {
    const lb::cuda::kv_rows_view& dev = part ? view.values : view.keys;
    const auto& m = part ? cpu.values().matrix : cpu.keys().matrix;
    const std::vector<uint8_t> codes = download(dev.codes, rows * row_bytes), scales = download(dev.scales, rows * scale_bytes);
    const std::vector<uint8_t> zeros = Scheme::has_zero ? download(dev.zeros, rows * groups) : std::vector<uint8_t>();
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t h = 0; h < hkv; ++h)
        for (std::size_t t = 0; t < cpu.length(b); ++t) {
          const std::size_t rc = cpu.row(b, h, t);
          const std::size_t rd = c.page_tokens ? (tables[b][t / c.page_tokens] * hkv + h) * c.page_tokens + t % c.page_tokens
                                               : (b * hkv + h) * view.capacity + t;
          const bool same = std::memcmp(codes.data() + rd * row_bytes, m.codes() + rc * row_bytes, row_bytes) == 0 &&
                            std::memcmp(scales.data() + rd * scale_bytes, reinterpret_cast<const uint8_t*>(m.scales()) + rc * scale_bytes,
                                        scale_bytes) == 0 &&
                            (!Scheme::has_zero || std::memcmp(zeros.data() + rd * groups, m.zeros() + rc * groups, groups) == 0);
          if (!same && bad++ < 3) {
            std::printf("  %s seed=%u: %s of sequence %zu head %zu token %zu differ; codes gpu/cpu:", name, seed,
                        part ? "V" : "K", b, h, t);
            for (std::size_t i = 0; i < std::min<std::size_t>(row_bytes, 8); ++i)
              std::printf(" %02x/%02x", codes[rd * row_bytes + i], m.codes()[rc * row_bytes + i]);
            std::printf("; scale bytes");
            for (std::size_t i = 0; i < std::min<std::size_t>(scale_bytes, 4); ++i)
              std::printf(" %02x/%02x", scales[rd * scale_bytes + i], reinterpret_cast<const uint8_t*>(m.scales())[rc * scale_bytes + i]);
            std::printf("\n");
          }
        }
  }
  ++cases;
  if (bad) ++failures;
  std::printf("%s append %-11s d=%3zu hkv=%zu B=%zu %s g=%3zu %s%s rounds=%zu: codes, scales, zeros, lengths %s\n",
              bad ? "FAIL" : "ok  ", name, d, hkv, B, c.page_tokens ? "paged" : "contig", g,
              c.bf16_input ? "bf16 in" : "fp16 in", c.stride_pad ? " strided" : "", c.rounds.size(),
              bad ? "differ  <--" : "equal");

  // Decode after the GPU appends equals decode after uploading the CPU cache, bit for bit.
  const std::size_t hq = 2 * hkv;
  std::vector<__half> qh(B * hq * d);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : qh) x = __float2half(normal(rng));
  __half *dq = nullptr, *dout = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&dq, qh.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&dout, 2 * qh.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(dq, qh.data(), qh.size() * sizeof(__half), cudaMemcpyHostToDevice));
  LOWBIT_CUDA_CHECK(cudaMemset(dout, 0xFF, 2 * qh.size() * sizeof(__half)));
  const auto uploaded = lb::cuda::upload(cpu);
  lb::cuda::decode_workspace ws;
  lb::cuda::decode(dq, gpu.view(), dout, hq, ws, stream);
  LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  lb::cuda::decode(dq, uploaded.view(), dout + qh.size(), hq, ws, stream);
  LOWBIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<uint8_t> outs = download(dout, 2 * qh.size() * sizeof(__half));
  const std::size_t half_bytes = qh.size() * sizeof(__half);
  const bool same = std::memcmp(outs.data(), outs.data() + half_bytes, half_bytes) == 0;
  bool finite = true;
  for (std::size_t i = 0; i < qh.size(); ++i) {
    __half x;
    std::memcpy(&x, outs.data() + i * 2, 2);
    finite = finite && std::isfinite(__half2float(x));
  }
  ++cases;
  if (!same || !finite) ++failures;
  std::printf("%s append %-11s decode after GPU appends %s decode after upload%s\n", same && finite ? "ok  " : "FAIL", name,
              same ? "==" : "!=", finite ? "" : " (non-finite output)  <--");
  cudaFree(dq);
  cudaFree(dout);
  cudaStreamDestroy(stream);
}

template <class Scheme>
void check_append_scheme(const char* name, unsigned& seed) {
  const append_case cases_[] = {
      // Contiguous, odd capacity and head count: a prefill of different lengths, then decode steps
      // (one token each, in another order), then a second prefill for two sequences.
      {3, 128, 3, 0, 203, 0, 0, false, 0,
       {{{0, 1, 2}, {37, 1, 130}}, {{2, 0, 1}, {1, 1, 1}}, {{1, 2}, {64, 5}}, {{0, 1, 2}, {1, 1, 1}}}},
      // Paged (16-token pages), groups of head_dim / 4, bf16 inputs with a padded token stride.
      {3, 64, 5, 16, 0, 16, 6, true, 8, {{{0, 1, 2}, {17, 0, 40}}, {{1, 0, 2}, {1, 1, 1}}, {{1, 2, 0}, {33, 2, 1}}}},
      // Paged (32-token pages), one KV head, groups of 32 elements, fp16.
      {3, 128, 1, 32, 0, 32, 5, false, 0, {{{2, 0, 1}, {100, 31, 1}}, {{0, 1, 2}, {1, 1, 1}}, {{0}, {7}}}},
      // Contiguous head_dim 64 in halves; 70 sequences (two launches of 64 and 6 entries).
      {70, 64, 1, 32, 20, 0, 0, false, 0, {{{}, {}}, {{}, {}}}},
      // A long prefill (16814 rows, one a warp: 2102 blocks, the last partial), groups of 64.
      {2, 128, 7, 64, 1210, 0, 0, false, 0, {{{1, 0}, {801, 400}}, {{0, 1}, {1, 1}}}},
      // head_dim 256: contiguous, groups of 64 (8 lanes), fp16; paged (16-token pages), whole-vector
      // scales (32 lanes), bf16 with a padded token stride.
      {2, 256, 2, 64, 90, 0, 0, false, 0, {{{0, 1}, {65, 3}}, {{1, 0}, {1, 1}}}},
      {2, 256, 3, 0, 0, 16, 4, true, 24, {{{1, 0}, {20, 33}}, {{0, 1}, {1, 1}}}},
      // head_dim 80 and 96: 4 elements a lane on 20 / 24 lanes, groups of 5, 10, 20 / 6, 12, 24 lanes.
      {3, 80, 3, 20, 203, 0, 0, false, 0, {{{0, 1, 2}, {37, 1, 130}}, {{2, 0, 1}, {1, 1, 1}}}},
      {2, 80, 2, 40, 0, 16, 4, true, 8, {{{1, 0}, {20, 33}}, {{0, 1}, {1, 1}}}},
      {2, 96, 2, 24, 90, 0, 0, false, 0, {{{0, 1}, {65, 3}}, {{1, 0}, {1, 1}}}},
      {3, 96, 1, 48, 0, 32, 3, true, 24, {{{2, 0, 1}, {70, 31, 1}}, {{0, 1, 2}, {1, 1, 1}}}},
      {2, 96, 2, 0, 70, 0, 0, false, 0, {{{0, 1}, {64, 5}}, {{1, 0}, {1, 1}}}},
  };
  for (append_case c : cases_) {
    if (c.batch == 70) {  // every sequence: 1 to 3 tokens, then one token each (in reverse order)
      for (std::size_t b = 0; b < 70; ++b) {
        c.rounds[0].seqs.push_back(b), c.rounds[0].counts.push_back(1 + b % 3);
        c.rounds[1].seqs.push_back(69 - b), c.rounds[1].counts.push_back(1);
      }
    }
    check_append<Scheme>(name, c, seed++);
  }
}

/// Overflow, bad sequence indices and bad tables are lowbit::errors, and a failing call changes nothing.
void check_append_errors() {
  using S = lowbit_test::kv::int8_f16;
  lb::attention::kv_shape s;
  s.batch = 3, s.kv_heads = 2, s.head_dim = 64, s.capacity = 20;
  lb::cuda::device_kv_cache<S> contiguous(s);
  __half* buf = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&buf, 64 * 2 * 64 * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMemset(buf, 0, 64 * 2 * 64 * sizeof(__half)));
  const std::size_t seqs[] = {0, 1, 2}, fill[] = {20, 3, 0};
  lb::cuda::append(contiguous, buf, buf, seqs, fill, 3);
  const std::size_t one[] = {1, 1, 1}, seq3[] = {3}, dup[] = {1, 1};
  expect_error("a token past a full sequence's capacity", [&] { lb::cuda::append(contiguous, buf, buf, seqs, one, 3); });
  expect_error("sequence 3 of a batch of 3", [&] { lb::cuda::append(contiguous, buf, buf, seq3, one, 1); });
  expect_error("a sequence listed twice", [&] { lb::cuda::append(contiguous, buf, buf, dup, one, 2); });
  expect_error("null k", [&] { lb::cuda::append(contiguous, static_cast<const __half*>(nullptr), buf, seqs + 1, one, 1); });
  expect_error("token_stride below kv_heads x head_dim",
               [&] { lb::cuda::append(contiguous, buf, buf, seqs + 1, one, 1, nullptr, 100); });
  expect_error("map_pages on a contiguous cache", [&] {
    const uint32_t p[] = {0};
    contiguous.map_pages(0, p, 1);
  });
  expect_error("length of sequence 3 of 3", [&] { (void)contiguous.length(3); });
  expect_error("capacity of sequence 3 of 3", [&] { (void)contiguous.capacity(3); });
  ++cases;
  const bool unchanged = contiguous.length(0) == 20 && contiguous.length(1) == 3 && contiguous.length(2) == 0;
  if (!unchanged) ++failures;
  std::printf("%s append errors left the lengths as they were (20, 3, 0): %zu, %zu, %zu\n", unchanged ? "ok  " : "FAIL",
              contiguous.length(0), contiguous.length(1), contiguous.length(2));

  lb::attention::kv_shape ps = s;
  ps.capacity = 64, ps.page_tokens = 16, ps.pages = 6;  // tables of 4 pages
  lb::cuda::device_kv_cache<S> paged(ps);
  const uint32_t pages[] = {5, 0, 3, 1, 2};
  paged.map_pages(0, pages, 2);
  const std::size_t seq0[] = {0}, n32[] = {32}, n1[] = {1};
  lb::cuda::append(paged, buf, buf, seq0, n32, 1);
  expect_error("a token past a sequence's mapped pages", [&] { lb::cuda::append(paged, buf, buf, seq0, n1, 1); });
  expect_error("a token for a sequence with no pages", [&] { lb::cuda::append(paged, buf, buf, seqs + 1, n1, 1); });
  expect_error("page 6 of a pool of 6", [&] {
    const uint32_t p[] = {6};
    paged.map_pages(1, p, 1);
  });
  expect_error("5 pages for tables of 4", [&] { paged.map_pages(1, pages, 5); });
  expect_error("1 page for a sequence of 32 tokens", [&] { paged.map_pages(0, pages, 1); });
  expect_error("head_dim 112", [&] {
    lb::attention::kv_shape s112 = s;
    s112.head_dim = 112;
    lb::cuda::device_kv_cache<S> c(s112);
  });
  expect_error("group_size 32 with head_dim 96", [&] {
    lb::attention::kv_shape s96 = s;
    s96.head_dim = 96;
    lb::cuda::device_kv_cache<S> c(s96, 32);
  });
  expect_error("group_size 48 with head_dim 64", [&] { lb::cuda::device_kv_cache<S> c(s, 48); });
  paged.map_pages(0, pages, 3);  // a third page: room again
  lb::cuda::append(paged, buf, buf, seq0, n1, 1);
  LOWBIT_CUDA_CHECK(cudaDeviceSynchronize());
  ++cases;
  if (paged.length(0) != 33) ++failures;
  std::printf("%s paged append after mapping a third page: length %zu (33)\n", paged.length(0) == 33 ? "ok  " : "FAIL",
              paged.length(0));
  cudaFree(buf);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned seed = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 20261126u;
  only_scheme = argc > 2 ? argv[2] : nullptr;
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
    if (only_scheme) {
      std::printf("%d decode cases of %s, %d failed\n", cases, only_scheme, failures);
      return failures ? 1 : 0;
    }

    // cuda::append against the CPU cache's append.
    check_append_scheme<kv::int8_f16>("int8", seed);
    check_append_scheme<kv::uint8z_f16>("uint8+zero", seed);
    check_append_scheme<kv::int4_f16>("int4", seed);
    check_append_scheme<kv::uint4z_f16>("uint4+zero", seed);
    check_append_scheme<kv::e4m3_f16>("fp8_e4m3", seed);
    check_append_scheme<kv::int8_f32>("int8 f32s", seed);
    check_append_scheme<kv::int4_bf16>("int4 bf16s", seed);
    check_append_errors();

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
    expect_error("null q", [&] { lb::cuda::decode(static_cast<const __half*>(nullptr), gpu.view(), buf, 4, ws); });
    expect_error("group_size 16 with head_dim 128", [&] {
      lb::attention::kv_cache<kv::int8_f16> c16(s, 16);
      (void)lb::cuda::upload(c16);
    });
    expect_error("head_dim 48", [&] {
      lb::attention::kv_shape s48 = s;
      s48.head_dim = 48;
      lb::attention::kv_cache<kv::int4_f16> c48(s48);
      (void)lb::cuda::upload(c48);
    });
    expect_error("group_size 16 with head_dim 80", [&] {
      lb::attention::kv_shape s80 = s;
      s80.head_dim = 80;
      lb::attention::kv_cache<kv::int8_f16> c80(s80, 16);
      (void)lb::cuda::upload(c80);
    });
    cudaFree(buf);
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 2;
  }
  std::printf("%s: %d cases, %d failed\n", failures ? "FAILED" : "PASSED", cases, failures);
  return failures ? 1 : 0;
}
