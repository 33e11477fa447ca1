// Checkpoint interop: what loading costs and what the loaded weights run at. For each layout, a
// 4096 x 14336 weight (N x K) in the tool's bytes (random codes, valid scales) is
//   BM_import/<layout>/4096x14336        imported into a lowbit matrix and packed into panels
//                                        (bytes/s of the tool's bytes: the one-time load cost)
//   BM_gemv/<layout>/<arch>/4096x14336/m1/t<threads>
//                                        y = x·Wᵀ at M = 1 on the imported weights
// beside OpenBLAS sgemv on fp32 weights and the memory read / copy references (bench/memory.hpp).
// llama.cpp's own figures for its Q4_0 / Q8_0 / IQ4_NL / MXFP4 GEMV on this machine are in
// ../shared/TARGETS.md (e.g. Q4_0: 1191 µs on 2 threads).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/interop/awq.hpp"
#include "lowbit/interop/bnb.hpp"
#include "lowbit/interop/gguf.hpp"
#include "lowbit/interop/gptq.hpp"
#include "lowbit/kernels/gemm.hpp"
#include "lowbit/layout/panel.hpp"
#include "memory.hpp"
#include "peers.hpp"

namespace {

using namespace lowbit;
using namespace lowbit::interop;
using bench_common::random_floats;
using bench_common::set_gemm_counters;

constexpr std::size_t n = 4096, k = 14336;

/// Random ggml blocks of `type` whose scales are valid: fp16 ~0.01, or E8M0 near 2^-6.
std::vector<uint8_t> ggml_blocks(ggml_type type) {
  const ggml_type_info& info = ggml_info(type);
  std::vector<uint8_t> bytes(ggml_bytes(type, n, k));
  bench_memory::fill_random(bytes.data(), bytes.size(), static_cast<uint64_t>(type) + 1);
  for (std::size_t b = 0; b < bytes.size() / info.block_bytes; ++b) {
    uint8_t* block = bytes.data() + b * info.block_bytes;
    if (type == ggml_type::mxfp4) {
      block[0] = static_cast<uint8_t>(118 + b % 8);
    } else {
      const uint16_t d = fp16(0.01f + 0.001f * static_cast<float>(b % 7)).bits;
      std::memcpy(block, &d, 2);
    }
  }
  return bytes;
}

/// The layouts benchmarked: each gives the tool's bytes' size and an import into panels.
struct layout {
  std::string name;
  std::size_t bytes;
  std::function<void(benchmark::State&, bool gemv, isa path, std::size_t threads)> run;
};

template <class Scheme>
void run_gemv(benchmark::State& state, const panel_matrix<Scheme>& w, isa path, std::size_t threads) {
  const std::vector<float> x = random_floats(k, 1);
  std::vector<float> y(n);
  for (auto _ : state) {
    if (threads <= 1) {
      gemm(matrix_view<const float>(x.data(), 1, k), w, matrix_view<float>(y.data(), 1, n), {}, serial_executor{}, path);
    } else {
      gemm(matrix_view<const float>(x.data(), 1, k), w, matrix_view<float>(y.data(), 1, n), {}, bench_memory::pool(threads), path);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, 1, n, k, static_cast<double>(w.storage_bytes()), 4.0 * double(k + n));
}

/// A layout from an import function: BM_import times import + pack; BM_gemv runs on one import.
template <class Scheme, class Import>
layout make_layout(const std::string& name, std::size_t bytes, Import import) {
  return {name, bytes, [=](benchmark::State& state, bool gemv, isa path, std::size_t threads) {
            if (gemv) {
              static const panel_matrix<Scheme> w = pack_panels(import().view());
              run_gemv(state, w, path, threads);
              return;
            }
            for (auto _ : state) {
              const panel_matrix<Scheme> w = pack_panels(import().view());
              benchmark::DoNotOptimize(w.storage_bytes());
            }
            state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
          }};
}

template <class Scheme>
layout ggml_layout(const std::string& name, ggml_type type) {
  static const std::vector<uint8_t> blocks = ggml_blocks(type);
  return make_layout<Scheme>(name, blocks.size(), [] { return import_ggml<Scheme>(blocks.data(), blocks.size(), n, k); });
}

layout gptq_layout() {
  static const std::vector<int32_t> qweight = [] {
    std::vector<int32_t> v(k / 8 * n);
    bench_memory::fill_random(reinterpret_cast<uint8_t*>(v.data()), v.size() * 4, 11);
    return v;
  }();
  static const std::vector<int32_t> qzeros(k / 128 * n / 8, 0x77777777);
  static const std::vector<fp16> scales(k / 128 * n, fp16(0.01f));
  const std::size_t bytes = qweight.size() * 4 + qzeros.size() * 4 + scales.size() * 2;
  return make_layout<gptq_int4>("gptq_int4_g128", bytes, [] {
    gptq_tensors t{qweight.data(), qzeros.data(), scales.data(), nullptr, k, n, 128, gptq_format::v1};
    return import_gptq<gptq_int4>(t).weights;
  });
}

layout awq_layout() {
  static const std::vector<int32_t> qweight = [] {
    std::vector<int32_t> v(k * n / 8);
    bench_memory::fill_random(reinterpret_cast<uint8_t*>(v.data()), v.size() * 4, 12);
    return v;
  }();
  static const std::vector<int32_t> qzeros(k / 128 * n / 8, 0x88888888);
  static const std::vector<fp16> scales(k / 128 * n, fp16(0.01f));
  const std::size_t bytes = qweight.size() * 4 + qzeros.size() * 4 + scales.size() * 2;
  return make_layout<awq_int4>("awq_int4_g128", bytes, [] {
    awq_tensors t{qweight.data(), qzeros.data(), scales.data(), k, n, 128};
    return import_awq(t);
  });
}

layout bnb_layout() {
  static const std::vector<uint8_t> packed = [] {
    std::vector<uint8_t> v(n * k / 2);
    bench_memory::fill_random(v.data(), v.size(), 13);
    return v;
  }();
  static const std::vector<float> absmax(n * k / 64, 0.05f);
  return make_layout<bnb_nf4>("bnb_nf4_g64", packed.size() + absmax.size() * 4, [] {
    bnb_4bit_tensors t;
    t.packed = packed.data();
    t.rows = n;
    t.cols = k;
    t.blocksize = 64;
    t.absmax = absmax.data();
    return import_bnb_4bit<bnb_nf4>(t);
  });
}

const bool registered = [] {
  const std::vector<layout> layouts = {
      ggml_layout<ggml_scheme::q4_0>("gguf_q4_0", ggml_type::q4_0),
      ggml_layout<ggml_scheme::q8_0>("gguf_q8_0", ggml_type::q8_0),
      ggml_layout<ggml_scheme::iq4_nl>("gguf_iq4_nl", ggml_type::iq4_nl),
      ggml_layout<ggml_scheme::mxfp4>("gguf_mxfp4", ggml_type::mxfp4),
      gptq_layout(), awq_layout(), bnb_layout()};
  const std::string shape = std::to_string(n) + "x" + std::to_string(k);
  for (const layout& l : layouts) {
    benchmark::RegisterBenchmark(("BM_import/" + l.name + "/" + shape).c_str(), [l](benchmark::State& state) {
      l.run(state, false, best_isa(), 1);
    })->UseRealTime()->Unit(benchmark::kMillisecond);
    for (isa path : supported_isas()) {
      if (path == isa::scalar) continue;
      for (std::size_t threads : {1, 2})
        benchmark::RegisterBenchmark(("BM_gemv/" + l.name + "/" + isa_name(path) + "/" + shape + "/m1/t" + std::to_string(threads)).c_str(),
                                     [l, path, threads](benchmark::State& state) { l.run(state, true, path, threads); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
    }
  }
#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
  for (std::size_t threads : {1, 2})
    benchmark::RegisterBenchmark(("BM_gemv/f32/openblas/" + shape + "/m1/t" + std::to_string(threads)).c_str(),
                                 [threads](benchmark::State& state) {
                                   const std::vector<float> w = random_floats(n * k, 2), x = random_floats(k, 1);
                                   std::vector<float> y(n);
                                   peers::openblas_linear blas(1, n, k, w.data(), static_cast<int>(threads));
                                   for (auto _ : state) {
                                     blas.run(x.data(), y.data());
                                     benchmark::ClobberMemory();
                                   }
                                   set_gemm_counters(state, 1, n, k, 4.0 * double(n) * double(k), 4.0 * double(k + n));
                                 })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
#endif
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
