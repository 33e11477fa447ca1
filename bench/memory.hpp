// Memory-bandwidth references for lowbit's benchmarks: what "memory-bound" means on this machine,
// measured in the same binary and run as the kernels it is compared with.
//
// Including this header registers (once per program):
//   BM_memory_read/<threads>   sum of a 1 GiB buffer, 8 independent vector accumulators
//                              (AVX-512 where compiled, else AVX2, else scalar); bytes read.
//   BM_memory_copy/<threads>   512 MiB -> 512 MiB with non-temporal stores; bytes read + written.
// for 1 and 2 threads (2: a lowbit::thread_pool, each thread a contiguous half). Both report
// bytes_per_second (google-benchmark's counter) over wall-clock time.
//
// Helpers for other benchmarks: bench_memory::read_sum / copy_streaming over a range, the shared
// thread pools (bench_memory::pool(threads)) and bench_memory::fill_random.
#pragma once

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#if defined(__SSE2__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "lowbit/core/aligned.hpp"
#include "lowbit/core/parallel.hpp"

namespace bench_memory {

inline constexpr std::size_t read_bytes_total = std::size_t(1) << 30;
inline constexpr std::size_t copy_bytes_total = std::size_t(512) << 20;

/// A process-wide pool of `threads` threads (caller included), created on first use.
inline lowbit::thread_pool& pool(std::size_t threads) {
  static lowbit::thread_pool two(2);
  static lowbit::thread_pool four(4);
  if (threads <= 2) return two;
  return four;
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for gigabytes.
inline void fill_random(uint8_t* data, std::size_t bytes, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  std::size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    const uint64_t v = x * 0x2545F4914F6CDD1Dull;
    std::memcpy(data + i, &v, 8);
  }
  for (; i < bytes; ++i) data[i] = static_cast<uint8_t>(i * 131 + seed);
}

/// Sum of the 32-bit words of [p, p + bytes) (bytes a multiple of 512, p 64-byte aligned) with
/// eight independent accumulators, so that the loads, not the adds, set the pace.
inline uint32_t read_sum(const uint8_t* p, std::size_t bytes) {
#if defined(__AVX512F__)
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (std::size_t i = 0; i < bytes; i += 512) {
    const __m512i* v = reinterpret_cast<const __m512i*>(p + i);
    a0 = _mm512_add_epi32(a0, _mm512_load_si512(v + 0));
    a1 = _mm512_add_epi32(a1, _mm512_load_si512(v + 1));
    a2 = _mm512_add_epi32(a2, _mm512_load_si512(v + 2));
    a3 = _mm512_add_epi32(a3, _mm512_load_si512(v + 3));
    a4 = _mm512_add_epi32(a4, _mm512_load_si512(v + 4));
    a5 = _mm512_add_epi32(a5, _mm512_load_si512(v + 5));
    a6 = _mm512_add_epi32(a6, _mm512_load_si512(v + 6));
    a7 = _mm512_add_epi32(a7, _mm512_load_si512(v + 7));
  }
  a0 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                        _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
  return static_cast<uint32_t>(_mm512_reduce_add_epi32(a0));
#elif defined(__AVX2__)
  __m256i a[8];
  for (auto& x : a) x = _mm256_setzero_si256();
  for (std::size_t i = 0; i < bytes; i += 256) {
    const __m256i* v = reinterpret_cast<const __m256i*>(p + i);
    for (int j = 0; j < 8; ++j) a[j] = _mm256_add_epi32(a[j], _mm256_load_si256(v + j));
  }
  alignas(32) uint32_t lanes[8];
  __m256i s = a[0];
  for (int j = 1; j < 8; ++j) s = _mm256_add_epi32(s, a[j]);
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  uint32_t total = 0;
  for (uint32_t l : lanes) total += l;
  return total;
#else
  uint64_t a[8] = {};
  for (std::size_t i = 0; i < bytes; i += 64)
    for (int j = 0; j < 8; ++j) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * j, 8);
      a[j] += w;
    }
  uint64_t total = 0;
  for (uint64_t x : a) total += x;
  return static_cast<uint32_t>(total ^ (total >> 32));
#endif
}

/// Copies bytes (a multiple of 256, both pointers 64-byte aligned) with non-temporal stores.
inline void copy_streaming(uint8_t* dst, const uint8_t* src, std::size_t bytes) {
#if defined(__AVX512F__)
  for (std::size_t i = 0; i < bytes; i += 256) {
    const __m512i* s = reinterpret_cast<const __m512i*>(src + i);
    __m512i* d = reinterpret_cast<__m512i*>(dst + i);
    const __m512i v0 = _mm512_load_si512(s), v1 = _mm512_load_si512(s + 1);
    const __m512i v2 = _mm512_load_si512(s + 2), v3 = _mm512_load_si512(s + 3);
    _mm512_stream_si512(d, v0);
    _mm512_stream_si512(d + 1, v1);
    _mm512_stream_si512(d + 2, v2);
    _mm512_stream_si512(d + 3, v3);
  }
  _mm_sfence();
#elif defined(__AVX2__)
  for (std::size_t i = 0; i < bytes; i += 128) {
    const __m256i* s = reinterpret_cast<const __m256i*>(src + i);
    __m256i* d = reinterpret_cast<__m256i*>(dst + i);
    for (int j = 0; j < 4; ++j) _mm256_stream_si256(d + j, _mm256_load_si256(s + j));
  }
  _mm_sfence();
#else
  std::memcpy(dst, src, bytes);
#endif
}

/// Runs f(begin, end) over [0, bytes) split into `threads` contiguous parts aligned to `grain`.
template <class F>
void split(std::size_t threads, std::size_t bytes, std::size_t grain, F&& f) {
  const std::size_t units = bytes / grain;
  auto run = [&](std::size_t begin, std::size_t end) { f(begin * grain, end * grain); };
  if (threads <= 1) {
    run(0, units);
  } else {
    pool(threads)(units, run);
  }
}

inline const uint8_t* read_buffer() {
  static const lowbit::aligned_buffer<uint8_t> buffer = [] {
    lowbit::aligned_buffer<uint8_t> b(read_bytes_total);
    fill_random(b.data(), b.size(), 1);
    return b;
  }();
  return buffer.data();
}

inline void BM_memory_read(benchmark::State& state, std::size_t threads) {
  const uint8_t* data = read_buffer();
  std::atomic<uint32_t> sink{0};
  for (auto _ : state) {
    split(threads, read_bytes_total, 4096, [&](std::size_t begin, std::size_t end) {
      sink.fetch_add(read_sum(data + begin, end - begin), std::memory_order_relaxed);
    });
  }
  benchmark::DoNotOptimize(sink.load());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * read_bytes_total));
}

inline void BM_memory_copy(benchmark::State& state, std::size_t threads) {
  static lowbit::aligned_buffer<uint8_t> src(copy_bytes_total), dst(copy_bytes_total);
  static const bool filled = (fill_random(src.data(), src.size(), 2), true);
  (void)filled;
  for (auto _ : state) {
    split(threads, copy_bytes_total, 4096, [&](std::size_t begin, std::size_t end) {
      copy_streaming(dst.data() + begin, src.data() + begin, end - begin);
    });
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 2 * copy_bytes_total));
}

inline bool register_memory_benchmarks() {
  for (std::size_t threads : {1, 2}) {
    benchmark::RegisterBenchmark(("BM_memory_read/" + std::to_string(threads)).c_str(), BM_memory_read, threads)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_memory_copy/" + std::to_string(threads)).c_str(), BM_memory_copy, threads)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}

/// Registration happens once per program, at static initialization.
inline const bool memory_benchmarks_registered = register_memory_benchmarks();

}  // namespace bench_memory
