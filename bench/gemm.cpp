// Quantized GEMM / GEMV y = x · Wᵀ beside its peers in the same binary: OpenBLAS sgemm/sgemv and
// oneDNN matmul (f32, and u8 x s8 -> s32) on the same shapes, and the memory read / copy
// references (bench/memory.hpp) that say what memory-bound means on this machine.
//
//   BM_gemm/<format>/<isa>/<N>x<K>/m<M>/t<threads>      lowbit weight-only, fp32 activations
//   BM_gemm/<format>_a8/<isa>/<N>x<K>/m<M>/t<threads>   lowbit compute::int8 (W8A8 / W4A8), the
//                                                        per-row activation quantization included
//   BM_gemm/<format>_q8/<isa>/...                       the same integer kernel on activations
//                                                        quantized once before the loop (an engine
//                                                        reusing one quantized x for Q, K, V): like
//                                                        for like with oneDNN u8s8, whose x is u8
//   BM_gemm/<format>_cold/<isa>/.../m1/...              M = 1 weight-only over copies of the matrix
//                                                        that together exceed the caches (cold_copies
//                                                        in common.hpp): streaming from memory
//   BM_gemm/<format>_bf16/<isa>/...                     lowbit weight-only, bf16 activations
//   BM_gemm/int4_bf16out/<isa>/...                      lowbit weight-only, fp32 activations, bf16 output
//   BM_gemm/f32/openblas/...  BM_gemm/f32/onednn/...  BM_gemm/u8s8/onednn/...   the peers (their x
//                                                        already u8 for u8s8; weights prepacked)
// Shapes N x K: 4096x4096, 14336x4096, 4096x14336; M in {1, 4, 16, 64, 512}; 1 and 2 threads.
// Counters: bytes_per_second = weight bytes (packed codes + scales + zero points, or the peer's
// fp32 / s8 weights) + x + y; GOP/s = 2 M N K per second; weight_GB/s = weight bytes per second.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "lowbit/kernels/gemm.hpp"
#include "lowbit/kernels/gemm_bf16_output.hpp"
#include "common.hpp"
#include "memory.hpp"
#include "peers.hpp"

namespace {

using namespace lowbit;
using namespace bench_common;

// The scheme each format is usually met with (as in bench/dequantize.cpp).
const auto formats = std::make_tuple(
    bench_format<scheme<int4, fp16>>{"int4", 128}, bench_format<scheme<uint4, fp16, true>>{"uint4", 128},
    bench_format<mx::fp4>{"fp4_e2m1", 32}, bench_format<scheme<nf4, float>>{"nf4", 64},
    bench_format<scheme<sf4, float>>{"sf4", 64}, bench_format<scheme<iq4_nl, fp16>>{"iq4_nl", 32},
    bench_format<mx::int4>{"mxint4", 32}, bench_format<scheme<int8, float>>{"int8", 4096},
    bench_format<scheme<uint8, fp16, true>>{"uint8", 128}, bench_format<mx::int8>{"mxint8", 32},
    bench_format<mx::fp8_e4m3>{"fp8_e4m3", 32}, bench_format<mx::fp8_e5m2>{"fp8_e5m2", 32},
    bench_format<mx::fp6_e3m2>{"fp6_e3m2", 32});

struct shape {
  std::size_t n, k;
};
const shape shapes[] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
const std::size_t ms[] = {1, 4, 16, 64, 512};

template <class Scale>
Scale typical_scale(std::size_t i) {
  if constexpr (std::is_same<Scale, e8m0>::value) {
    return e8m0::from_bits(static_cast<uint8_t>(118 + i % 8));
  } else {
    return scale_traits<Scale>::from_float(0.01f + 0.001f * static_cast<float>(i % 17));
  }
}

/// A panel matrix of random codes (and finite scales, valid zero points): kernels' speed does not
/// depend on the values, and quantizing 60M weights for every case would dominate the run.
template <class Scheme>
const panel_matrix<Scheme>& weights(std::size_t n, std::size_t k, std::size_t group_size) {
  static panel_matrix<Scheme> w;
  if (w.shape().rows != n || w.shape().cols != k || w.shape().group_size != group_size) {
    w = panel_matrix<Scheme>(quantized_shape{n, k, std::min(group_size, k)});
    for (std::size_t p = 0; p < w.panels(); ++p) {
      bench_memory::fill_random(w.chunk(p, 0), w.chunks() * panel_matrix<Scheme>::chunk_bytes, p + 1);
      for (std::size_t g = 0; g < w.shape().groups_per_row(); ++g)
        for (std::size_t i = 0; i < 16; ++i) {
          w.scales(p, g)[i] = typical_scale<typename Scheme::scale_type>(p * 16 + i + g);
          if (Scheme::has_zero) w.zeros(p, g)[i] = static_cast<uint8_t>((i + g) % (1u << Scheme::bits));
        }
    }
  }
  return w;
}

template <class Scheme, class Act, class Out = float>
void run_lowbit(benchmark::State& state, std::size_t m, std::size_t n, std::size_t k, std::size_t group_size,
                compute mode, isa path, std::size_t threads) {
  const panel_matrix<Scheme>& w = weights<Scheme>(n, k, group_size);
  const std::vector<float> xf = random_floats(m * k, 1);
  const std::vector<Act> x(xf.begin(), xf.end());
  std::vector<Out> y(m * n);
  const gemm_options options{nullptr, mode, nullptr};
  for (auto _ : state) {
    if (threads <= 1) {
      gemm(matrix_view<const Act>(x.data(), m, k), w, matrix_view<Out>(y.data(), m, n), options, serial_executor{},
           path);
    } else {
      gemm(matrix_view<const Act>(x.data(), m, k), w, matrix_view<Out>(y.data(), m, n), options,
           bench_memory::pool(threads), path);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, m, n, k, static_cast<double>(w.storage_bytes()),
                    double(sizeof(Act)) * double(m) * double(k) + double(sizeof(Out)) * double(m) * double(n));
}

template <class Scheme>
void run_lowbit_cold(benchmark::State& state, std::size_t n, std::size_t k, std::size_t group_size, isa path,
                     std::size_t threads) {
  const std::vector<panel_matrix<Scheme>>& copies = cold_copies(weights<Scheme>(n, k, group_size), n, k);
  const std::vector<float> x = random_floats(k, 1);
  std::vector<float> y(n);
  std::size_t call = 0;
  for (auto _ : state) {
    const panel_matrix<Scheme>& w = copies[call++ % copies.size()];
    if (threads <= 1) {
      gemm(matrix_view<const float>(x.data(), 1, k), w, matrix_view<float>(y.data(), 1, n), {}, serial_executor{}, path);
    } else {
      gemm(matrix_view<const float>(x.data(), 1, k), w, matrix_view<float>(y.data(), 1, n), {},
           bench_memory::pool(threads), path);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, 1, n, k, static_cast<double>(copies[0].storage_bytes()), 4.0 * double(k + n));
}

template <class Scheme>
void run_lowbit_prequantized(benchmark::State& state, std::size_t m, std::size_t n, std::size_t k,
                             std::size_t group_size, isa path, std::size_t threads) {
  const panel_matrix<Scheme>& w = weights<Scheme>(n, k, group_size);
  const std::vector<float> x = random_floats(m * k, 1);
  std::vector<float> y(m * n);
  int8_activations a;
  a.quantize(matrix_view<const float>(x.data(), m, k), w.shape().group_size);
  for (auto _ : state) {
    if (threads <= 1) {
      gemm(a, w, matrix_view<float>(y.data(), m, n), nullptr, serial_executor{}, path);
    } else {
      gemm(a, w, matrix_view<float>(y.data(), m, n), nullptr, bench_memory::pool(threads), path);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, m, n, k, static_cast<double>(w.storage_bytes()), double(m) * double(k + 4 * n));
}

template <class Format>
void register_format(const Format& f) {
  using S = typename Format::scheme_type;
  for (isa path : supported_isas()) {
    if (path == isa::scalar) continue;  // the scalar path is a reference, minutes per case
    for (const shape& s : shapes)
      for (std::size_t m : ms)
        for (std::size_t threads : {1, 2}) {
          for (compute mode : {compute::weight_only, compute::int8}) {
            if (mode == compute::int8 && !has_integer_path<typename S::format>) continue;
            const std::string name = std::string("BM_gemm/") + f.name + (mode == compute::int8 ? "_a8/" : "/") +
                                     isa_name(path) + "/" + shape_name(s.n, s.k, m, threads);
            const std::size_t group = f.group_size;
            benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
              run_lowbit<S, float>(state, m, s.n, s.k, group, mode, path, threads);
            })->UseRealTime()->Unit(benchmark::kMicrosecond);
          }
          if (m == 1) {
            const std::string name =
                std::string("BM_gemm/") + f.name + "_cold/" + isa_name(path) + "/" + shape_name(s.n, s.k, m, threads);
            const std::size_t group = f.group_size;
            benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
              run_lowbit_cold<S>(state, s.n, s.k, group, path, threads);
            })->UseRealTime()->Unit(benchmark::kMicrosecond);
          }
          if (has_integer_path<typename S::format> && m >= 64) {  // where the quantization is a visible share
            const std::string name =
                std::string("BM_gemm/") + f.name + "_q8/" + isa_name(path) + "/" + shape_name(s.n, s.k, m, threads);
            const std::size_t group = f.group_size;
            benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
              run_lowbit_prequantized<S>(state, m, s.n, s.k, group, path, threads);
            })->UseRealTime()->Unit(benchmark::kMicrosecond);
          }
          const std::string name = std::string("BM_gemm/") + f.name + "_bf16/" + isa_name(path) + "/" +
                                   shape_name(s.n, s.k, m, threads);
          const std::size_t group = f.group_size;
          benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
            run_lowbit<S, bf16>(state, m, s.n, s.k, group, compute::weight_only, path, threads);
          })->UseRealTime()->Unit(benchmark::kMicrosecond);
          if (std::string(f.name) == "int4") {  // bf16 output: one format shows its cost
            benchmark::RegisterBenchmark(
                (std::string("BM_gemm/int4_bf16out/") + isa_name(path) + "/" + shape_name(s.n, s.k, m, threads)).c_str(),
                [=](benchmark::State& state) {
                  run_lowbit<S, float, bf16>(state, m, s.n, s.k, group, compute::weight_only, path, threads);
                })
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
          }
        }
  }
}

#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
void run_openblas(benchmark::State& state, std::size_t m, std::size_t n, std::size_t k, std::size_t threads) {
  const std::vector<float> w = random_floats(n * k, 2), x = random_floats(m * k, 1);
  std::vector<float> y(m * n);
  peers::openblas_linear blas(m, n, k, w.data(), static_cast<int>(threads));
  for (auto _ : state) {
    blas.run(x.data(), y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, m, n, k, 4.0 * double(n) * double(k), 4.0 * double(m) * double(k + n));
}
#endif

#if defined(LOWBIT_BENCH_HAVE_DNNL)
void run_onednn(benchmark::State& state, peers::onednn_linear::kind kind, std::size_t m, std::size_t n, std::size_t k,
                std::size_t threads) {
  const bool f32 = kind == peers::onednn_linear::kind::f32;
  const std::vector<float> wf = random_floats(n * k, 2), xf = random_floats(m * k, 1);
  std::vector<int8_t> w8(n * k);
  std::vector<uint8_t> x8(m * k);
  for (std::size_t i = 0; i < w8.size(); ++i) w8[i] = static_cast<int8_t>(wf[i] * 127.0f);
  for (std::size_t i = 0; i < x8.size(); ++i) x8[i] = static_cast<uint8_t>(128.0f + xf[i] * 127.0f);
  std::vector<float> y(m * n);  // s32 output has the same size
  peers::onednn_linear dnn(kind, m, n, k, f32 ? static_cast<const void*>(wf.data()) : w8.data(),
                           static_cast<int>(threads));
  for (auto _ : state) {
    dnn.run(f32 ? static_cast<const void*>(xf.data()) : x8.data(), y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, m, n, k, (f32 ? 4.0 : 1.0) * double(n) * double(k),
               (f32 ? 4.0 : 1.0) * double(m) * double(k) + 4.0 * double(m) * double(n));
}
#endif

const bool registered = [] {
  std::apply([](const auto&... f) { (register_format(f), ...); }, formats);
  for (const shape& s : shapes)
    for (std::size_t m : ms)
      for (std::size_t threads : {1, 2}) {
        const std::string tail = shape_name(s.n, s.k, m, threads);
        (void)tail;
#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
        benchmark::RegisterBenchmark(("BM_gemm/f32/openblas/" + tail).c_str(), [=](benchmark::State& state) {
          run_openblas(state, m, s.n, s.k, threads);
        })->UseRealTime()->Unit(benchmark::kMicrosecond);
#endif
#if defined(LOWBIT_BENCH_HAVE_DNNL)
        benchmark::RegisterBenchmark(("BM_gemm/f32/onednn/" + tail).c_str(), [=](benchmark::State& state) {
          run_onednn(state, peers::onednn_linear::kind::f32, m, s.n, s.k, threads);
        })->UseRealTime()->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark(("BM_gemm/u8s8/onednn/" + tail).c_str(), [=](benchmark::State& state) {
          run_onednn(state, peers::onednn_linear::kind::u8s8, m, s.n, s.k, threads);
        })->UseRealTime()->Unit(benchmark::kMicrosecond);
#endif
      }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
