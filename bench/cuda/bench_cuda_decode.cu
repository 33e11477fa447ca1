// Times lowbit::cuda::decode (decode attention over a low-bit KV cache) at the issue's shape:
// B = 8 sequences of S = 8192 tokens, Hq = 32 query heads, Hkv = 8 KV heads (GQA, 4 a group),
// head_dim 128; KV formats int8, FP8 E4M3, int4 (group 128 and 32), uint4 + zero (group 64), fp16
// scales; contiguous and paged (16-token pages, shuffled); and head_dim 256 (int8, int4 g128: twice
// the bytes a token), 96 and 80 (int8, int4, whole-vector scales; SDPA at 96 / 80: sdpa_decode.py --head-dim). CUDA events around 50 launches, median of 7 runs; launches
// alternate between two copies of the cache so that L2 (50 MB) holds neither.
// The PyTorch SDPA fp16 peer runs in the same gpu.sh call (bench/cuda/sdpa_decode.py).
// Also times cuda::append (quantizing new fp16 K/V tokens into the device cache): a decode step's
// (B = 8, Hkv = 8, d = 128, one token each) and a prefill's (B = 1, 2048 tokens); every launch
// appends to fresh rows (the cache holds all of the timed launches' tokens).
// Usage: bench_cuda_decode [--quick] [--only FORMAT-PREFIX] [--match PREFIX,PREFIX,...]
// [--append (the append table only)]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "lowbit/cuda.cuh"
#include "timing.cuh"

namespace {

namespace lb = lowbit;
int iterations = 50, repeats = 7;
constexpr std::size_t B = 8, S = 8192, HQ = 32, HKV = 8, D = 128;

template <class F>
double time_us(F&& launch) {  // with this benchmark's iterations and repeats (bench/cuda/timing.cuh)
  return bench_cuda::time_us(launch, iterations, repeats, 6);
}

struct row {
  std::string name;
  double bytes, auto_us, best_us;
  int best_split;
};
std::vector<row> rows;

const char* only = nullptr;  // --only NAME: one format, default split only (for a profiler)
const char* match = nullptr;  // --match P1,P2,...: the formats whose names start with one of these (no append table)

bool matches(const char* name) {
  if (!match) return true;
  for (const char* p = match; *p;) {
    const char* end = std::strchr(p, ',');
    const std::size_t n = end ? static_cast<std::size_t>(end - p) : std::strlen(p);
    if (n && std::strncmp(name, p, n) == 0) return true;
    if (!end) break;
    p = end + 1;
  }
  return false;
}

struct append_row {
  std::string name;
  std::size_t batch, tokens;
  double bytes, us;
};
std::vector<append_row> append_rows;

/// Times cuda::append of `tokens` tokens to each of `batch` sequences (Hkv = 8, d = 128).
template <class Scheme>
void bench_append(const char* name, std::size_t group_size, std::size_t batch, std::size_t tokens) {
  const int launches = 6 + iterations * repeats;
  lb::attention::kv_shape shape;
  shape.batch = batch;
  shape.kv_heads = HKV;
  shape.head_dim = D;
  shape.capacity = tokens * launches;
  lb::cuda::device_kv_cache<Scheme> cache(shape, group_size);
  const std::size_t values = batch * tokens * HKV * D;
  std::vector<__half> host(values);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : host) x = __float2half(normal(rng));
  __half *k = nullptr, *v = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&k, values * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&v, values * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(k, host.data(), values * sizeof(__half), cudaMemcpyHostToDevice));
  LOWBIT_CUDA_CHECK(cudaMemcpy(v, host.data(), values * sizeof(__half), cudaMemcpyHostToDevice));
  std::vector<std::size_t> seqs(batch), counts(batch, tokens);
  std::iota(seqs.begin(), seqs.end(), std::size_t(0));
  const double us = time_us([&](int) { lb::cuda::append(cache, k, v, seqs.data(), counts.data(), batch); });
  // Bytes that move: the fp16 inputs read, the codes, scales and zero points written.
  const std::size_t groups = group_size ? D / group_size : 1;
  const double written = 2.0 * batch * tokens * HKV *
                         (D * Scheme::bits / 8 + groups * (sizeof(typename Scheme::scale_type) + (Scheme::has_zero ? 1 : 0)));
  const double bytes = 2.0 * values * sizeof(__half) + written;
  append_rows.push_back({name, batch, tokens, bytes, us});
  std::printf("append %-26s B=%zu tokens=%zu: %.2f us, %.0f GB/s\n", name, batch, tokens, us, bytes / us * 1e-3);
  std::fflush(stdout);
  cudaFree(k);
  cudaFree(v);
}

void bench_appends() {
  for (const std::size_t batch : {std::size_t(8), std::size_t(1)}) {
    const std::size_t tokens = batch == 8 ? 1 : 2048;
    bench_append<lb::scheme<lb::int8, lb::fp16>>("int8 (g128)", 0, batch, tokens);
    bench_append<lb::scheme<lb::fp8_e4m3, lb::fp16>>("fp8_e4m3 (g128)", 0, batch, tokens);
    bench_append<lb::scheme<lb::int4, lb::fp16>>("int4 (g128)", 0, batch, tokens);
    bench_append<lb::scheme<lb::int4, lb::fp16>>("int4 (g32)", 32, batch, tokens);
    bench_append<lb::scheme<lb::uint4, lb::fp16, true>>("uint4+zero (g64)", 64, batch, tokens);
  }
  std::printf("\n| KV format | append | µs | GB/s |\n| --- | --- | --- | --- |\n");
  for (const append_row& r : append_rows)
    std::printf("| %s | B=%zu x %zu token%s | %.2f | %.0f |\n", r.name.c_str(), r.batch, r.tokens, r.tokens > 1 ? "s" : "",
                r.us, r.bytes / r.us * 1e-3);
  std::fflush(stdout);
}

template <class Scheme, std::size_t Dim = D>
void bench(const char* name, std::size_t group_size, std::size_t page_tokens, const __half* q, __half* out) {
  if ((only && std::strncmp(name, only, std::strlen(only)) != 0) || !matches(name)) return;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  lb::attention::kv_shape shape;
  shape.batch = B;
  shape.kv_heads = HKV;
  shape.head_dim = Dim;
  if (page_tokens) {
    shape.page_tokens = page_tokens;
    shape.pages = B * S / page_tokens;
  } else {
    shape.capacity = S;
  }
  lb::attention::kv_cache<Scheme> cache(shape, group_size);
  if (page_tokens) {
    std::vector<uint32_t> pool(shape.pages);
    std::iota(pool.begin(), pool.end(), 0u);
    std::shuffle(pool.begin(), pool.end(), rng);
    const std::size_t per_seq = S / page_tokens;
    for (std::size_t b = 0; b < B; ++b) cache.map_pages(b, pool.data() + b * per_seq, per_seq);
  }
  // Random keys and values, 1024 tokens at a time from a pool of random floats (at a different
  // offset each time: drawing all 134 M normals would take longer than the benchmark).
  std::vector<float> pool(4 * 1024 * HKV * Dim);
  for (float& x : pool) x = normal(rng);
  const std::size_t block = 1024 * HKV * Dim;
  std::uniform_int_distribution<std::size_t> offset(0, pool.size() - block);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < S; t += 1024) cache.append(b, pool.data() + offset(rng), pool.data() + offset(rng), 1024);
  const lb::cuda::device_kv_cache<Scheme> copies[2] = {lb::cuda::upload(cache), lb::cuda::upload(cache)};
  lb::cuda::decode_workspace workspace;
  row r{name, double(copies[0].bytes_read()), 0, 1e30, 0};
  const auto run = [&](int split) {
    lb::cuda::decode_options options;
    options.split_tokens = split;
    return time_us([&](int i) { lb::cuda::decode(q, copies[i % 2].view(), out, HQ, workspace, nullptr, options); });
  };
  r.auto_us = run(0);
  std::printf("%-30s default %.1f us; split tokens:", name, r.auto_us);
  if (only) return (void)std::printf("\n");
  for (int split : {256, 512, 1024, 1408, 2048, 4096}) {
    const double us = run(split);
    std::printf(" %d: %.1f", split, us);
    if (us < r.best_us) r.best_us = us, r.best_split = split;
  }
  std::printf("\n");
  rows.push_back(r);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool append_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) iterations = 10, repeats = 3;
    if (std::strcmp(argv[i], "--append") == 0) append_only = true;
    if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i], iterations = 5, repeats = 1;
    if (std::strcmp(argv[i], "--match") == 0 && i + 1 < argc) match = argv[++i];
  }
  cudaDeviceProp prop{};
  LOWBIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB; decode B=%zu S=%zu Hq=%zu Hkv=%zu d=%zu\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, B, S, HQ, HKV, D);
  if (append_only) return bench_appends(), 0;
  {  // Ceiling: a 1 GiB device-to-device copy, bytes read + written.
    const std::size_t bytes = std::size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    LOWBIT_CUDA_CHECK(cudaMalloc(&a, bytes));
    LOWBIT_CUDA_CHECK(cudaMalloc(&b, bytes));
    LOWBIT_CUDA_CHECK(cudaMemset(a, 1, bytes));
    const double us = time_us([&](int) { LOWBIT_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
    std::printf("device-to-device copy: %.0f GB/s (bytes read + written)\n", 2.0 * bytes / us * 1e-3);
    cudaFree(a);
    cudaFree(b);
  }
  std::vector<__half> qh(B * HQ * 256);  // the largest head_dim benchmarked
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : qh) x = __float2half(normal(rng));
  __half *q = nullptr, *out = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&q, qh.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMalloc(&out, qh.size() * sizeof(__half)));
  LOWBIT_CUDA_CHECK(cudaMemcpy(q, qh.data(), qh.size() * sizeof(__half), cudaMemcpyHostToDevice));

  bench<lb::scheme<lb::int8, lb::fp16>>("int8 (g128, contiguous)", 0, 0, q, out);
  bench<lb::scheme<lb::int8, lb::fp16>>("int8 (g128, paged 16)", 0, 16, q, out);
  bench<lb::scheme<lb::fp8_e4m3, lb::fp16>>("fp8_e4m3 (g128, contiguous)", 0, 0, q, out);
  bench<lb::scheme<lb::int4, lb::fp16>>("int4 (g128, contiguous)", 0, 0, q, out);
  bench<lb::scheme<lb::int4, lb::fp16>>("int4 (g32, contiguous)", 32, 0, q, out);
  bench<lb::scheme<lb::int4, lb::fp16>>("int4 (g128, paged 16)", 0, 16, q, out);
  bench<lb::scheme<lb::uint4, lb::fp16, true>>("uint4+zero (g64, contiguous)", 64, 0, q, out);
  bench<lb::scheme<lb::int8, lb::fp16>, 256>("int8 (d=256, g256, contiguous)", 0, 0, q, out);
  bench<lb::scheme<lb::int4, lb::fp16>, 256>("int4 (d=256, g128, contiguous)", 128, 0, q, out);
  bench<lb::scheme<lb::int8, lb::fp16>, 96>("int8 (d=96, g96, contiguous)", 0, 0, q, out);
  bench<lb::scheme<lb::int4, lb::fp16>, 96>("int4 (d=96, g96, contiguous)", 0, 0, q, out);
  bench<lb::scheme<lb::int8, lb::fp16>, 80>("int8 (d=80, g80, contiguous)", 0, 0, q, out);
  bench<lb::scheme<lb::int4, lb::fp16>, 80>("int4 (d=80, g80, contiguous)", 0, 0, q, out);

  std::printf("\n| KV format | cache MB read | lowbit µs (default split) | GB/s | best µs (split tokens) |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  for (const row& r : rows)
    std::printf("| %s | %.1f | %.1f | %.0f | %.1f (%d) |\n", r.name.c_str(), r.bytes * 1e-6, r.auto_us,
                r.bytes / r.auto_us * 1e-3, r.best_us, r.best_split);
  cudaFree(q);
  cudaFree(out);
  if (!match) bench_appends();
  return 0;
}
