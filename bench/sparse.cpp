// 2:4-sparse and block-sparse GEMM / GEMV beside the dense lowbit kernel of the same format,
// OpenBLAS sgemm/sgemv on the dense fp32 weights, and the memory read / copy references
// (bench/memory.hpp).
//
//   BM_sparse24/<format>/<isa>/<N>x<K>/m<M>/t<threads>   lowbit 2:4, weight-only, fp32 activations
//   BM_sparse24/f32/..., BM_sparse24/bf16/...            lowbit 2:4 with plain fp32 / bf16 kept values
//   BM_sparse48/int4/..., BM_sparse48/f32/...            lowbit 4:8 (nm_matrix): int4 (group 64 kept
//                                                        values, fp16 scales) and fp32 kept values;
//                                                        4096x4096 and 4096x14336, M in {1, 64, 512}
//   BM_bsr/<format>/<isa>/32x32_d<density %>/<N>x<K>/m<M>/t<threads>   lowbit BSR, 32 x 32 blocks
//   BM_bsr/<format>/<isa>/{1x16,4x4}_d<density %>/...   block shapes of the row kernels (kernels/gemm_bsr_rows.hpp)
//   BM_sparse24/<format>_a8/..., BM_bsr/<format>_a8/..., BM_dense/<format>_a8/...   the same with compute::int8 (W8A8 / W4A8; BSR M <= 64)
//   BM_dense/<format>/<isa>/<N>x<K>/m<M>/t<threads>      lowbit dense, same format and scales per column
//   BM_dense/f32/openblas/<N>x<K>/m<M>/t<threads>        the peer on the dense fp32 weights
//   BM_sparse24/<format>_cold/..., BM_dense/<format>_cold/...   M = 1 over copies of the matrix that
//                                                        together exceed the caches (see cold_copies)
// Shapes N x K: 4096x4096, 14336x4096, 4096x14336; M in {1, 16, 64, 512}; 1 and 2 threads.
// Counters: weight_GB/s = bytes of the matrix as stored (values, scales, zero points, positions)
// per second; GOP/s = 2 M N K per second, K the dense reduction length (so a 2:4 kernel that is
// twice as fast shows twice the GOP/s).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "lowbit/kernels/gemm.hpp"
#include "lowbit/kernels/gemm_bsr.hpp"
#include "lowbit/kernels/gemm_nm.hpp"
#include "lowbit/kernels/gemm_sparse24.hpp"
#include "lowbit/quant/quantize.hpp"
#include "common.hpp"
#include "memory.hpp"
#include "peers.hpp"

namespace {

using namespace lowbit;
using namespace bench_common;

// Group sizes count dense columns; the 2:4 matrices use half as many kept values per scale.
const auto formats = std::make_tuple(bench_format<scheme<int4, fp16>>{"int4", 128},
                                     bench_format<scheme<nf4, float>>{"nf4", 64},
                                     bench_format<mx::int4>{"mxint4", 64}, bench_format<scheme<int8, float>>{"int8", 4096},
                                     bench_format<scheme<fp8_e4m3, float>>{"fp8_e4m3", 128});

struct shape {
  std::size_t n, k;
};
const shape shapes[] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
const std::size_t ms[] = {1, 16, 64, 512};

/// Random codes with finite scales: speed does not depend on the values.
template <class Scheme>
quantized_matrix<Scheme> random_codes(std::size_t n, std::size_t k, std::size_t group_size) {
  quantized_matrix<Scheme> q(n, k, std::min(group_size, k));
  bench_memory::fill_random(q.codes(), n * q.row_bytes(), n + k);
  for (std::size_t i = 0; i < q.shape().group_count(); ++i)
    q.scales()[i] = scale_traits<typename Scheme::scale_type>::from_float(std::is_same<typename Scheme::scale_type, e8m0>::value ? 0.0078125f : 0.01f);
  return q;
}

/// Random 2:4 positions, the same for every kind of kept value.
inline sparse24_positions random_positions(std::size_t n, std::size_t k) {
  sparse24_positions positions(n, k);
  static const unsigned pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  uint64_t s = 7;
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t g = 0; g < positions.groups(); ++g) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      const unsigned* p = pairs[(s >> 33) % 6];
      positions.set(r, g, p[0], p[1]);
    }
  return positions;
}

/// 2:4 with plain fp32 or bf16 kept values.
template <class T>
const sparse24_matrix<T>& plain_sparse_weights(std::size_t n, std::size_t k) {
  static sparse24_matrix<T> w;
  if (w.rows() != n || w.cols() != k) {
    const std::vector<float> values = random_floats(n * k / 2, 3);
    const std::vector<T> kept(values.begin(), values.end());
    w = sparse24_matrix<T>(kept.data(), n, k / 2, random_positions(n, k).nibbles.data(), k);
  }
  return w;
}

/// A random N:M pattern (n of every m columns, the same for every kind of kept value).
inline nm_pattern random_nm_pattern(std::size_t rows, std::size_t cols, std::size_t n, std::size_t m) {
  nm_pattern out(rows, cols, n, m);
  uint64_t s = 13;
  std::size_t order[16];
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < out.groups(); ++g) {
      for (std::size_t i = 0; i < m; ++i) order[i] = i;
      for (std::size_t i = 0; i < n; ++i) {  // a partial Fisher-Yates shuffle
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        std::swap(order[i], order[i + (s >> 33) % (m - i)]);
        out.set(r, g * m + order[i], true);
      }
    }
  return out;
}

/// 4:8 with quantized (Scheme) or plain fp32 kept values; group_size counts dense columns.
template <class Scheme>
const nm_matrix<Scheme>& sparse48_weights(std::size_t n, std::size_t k, std::size_t group_size) {
  static nm_matrix<Scheme> w;
  if (w.rows() != n || w.cols() != k) {
    const nm_pattern pattern = random_nm_pattern(n, k, 4, 8);
    if constexpr (std::is_same<Scheme, float>::value) {
      const std::vector<float> kept = random_floats(n * k / 2, 3);
      w = nm_matrix<float>(kept.data(), n, k / 2, pattern.bits.data(), k, 4, 8);
    } else {
      const quantized_matrix<Scheme> kept = random_codes<Scheme>(n, k / 2, group_size / 2);
      w = nm_matrix<Scheme>(kept.view(), pattern.bits.data(), k, 4, 8);
    }
  }
  return w;
}

template <class Scheme>
const sparse24_matrix<Scheme>& sparse_weights(std::size_t n, std::size_t k, std::size_t group_size) {
  static sparse24_matrix<Scheme> w;
  if (w.rows() != n || w.cols() != k) {
    const quantized_matrix<Scheme> kept = random_codes<Scheme>(n, k / 2, group_size / 2);
    w = sparse24_matrix<Scheme>(kept.view(), random_positions(n, k).nibbles.data(), k);
  }
  return w;
}

/// Random BR x BC blocks, the same number in every block row (density x K / BC, at least 1).
template <class Scheme, std::size_t BR = 32, std::size_t BC = 32>
const bsr_matrix<Scheme>& bsr_weights(std::size_t n, std::size_t k, std::size_t group_size, double density) {
  static bsr_matrix<Scheme> w;
  static double made_for = 0.0;
  if (w.rows() != n || w.cols() != k || made_for != density) {
    const std::size_t bcols = k / BC, per_row = std::max<std::size_t>(1, std::size_t(density * double(bcols) + 0.5));
    std::vector<uint32_t> row_ptr(1, 0), col_idx;
    uint64_t s = 11;
    for (std::size_t b = 0; b < n / BR; ++b) {
      std::vector<uint32_t> cols(bcols);
      for (std::size_t c = 0; c < bcols; ++c) cols[c] = static_cast<uint32_t>(c);
      for (std::size_t c = 0; c < per_row; ++c) {  // a partial Fisher-Yates shuffle
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        std::swap(cols[c], cols[c + (s >> 33) % (bcols - c)]);
      }
      std::sort(cols.begin(), cols.begin() + static_cast<std::ptrdiff_t>(per_row));
      col_idx.insert(col_idx.end(), cols.begin(), cols.begin() + static_cast<std::ptrdiff_t>(per_row));
      row_ptr.push_back(static_cast<uint32_t>(col_idx.size()));
    }
    const bsr_structure structure(n, k, BR, BC, row_ptr.data(), col_idx.data());
    w = bsr_matrix<Scheme>(structure, random_codes<Scheme>(structure.blocks() * BR, BC, std::min(group_size, BC)).view());
    made_for = density;
  }
  return w;
}

template <class Scheme>
const panel_matrix<Scheme>& dense_weights(std::size_t n, std::size_t k, std::size_t group_size) {
  static panel_matrix<Scheme> w;
  if (w.shape().rows != n || w.shape().cols != k) w = pack_panels(random_codes<Scheme>(n, k, group_size).view());
  return w;
}

template <class Weights>
void run_over(benchmark::State& state, const Weights* ws, std::size_t count, std::size_t m, std::size_t n,
              std::size_t k, isa path, std::size_t threads, compute mode = compute::weight_only) {
  const std::vector<float> x = random_floats(m * k, 1);
  std::vector<float> y(m * n);
  const gemm_options options{nullptr, mode, nullptr};
  std::size_t call = 0;
  for (auto _ : state) {
    const Weights& w = ws[call++ % count];
    if (threads <= 1) {
      gemm(matrix_view<const float>(x.data(), m, k), w, matrix_view<float>(y.data(), m, n), options, serial_executor{},
           path);
    } else {
      gemm(matrix_view<const float>(x.data(), m, k), w, matrix_view<float>(y.data(), m, n), options,
           bench_memory::pool(threads), path);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_gemm_counters(state, m, n, k, static_cast<double>(ws[0].storage_bytes()), 0.0);
}

template <class Weights>
void run(benchmark::State& state, const Weights& w, std::size_t m, std::size_t n, std::size_t k, isa path,
         std::size_t threads, compute mode = compute::weight_only) {
  run_over(state, &w, 1, m, n, k, path, threads, mode);
}

template <class Weights>
void run_cold(benchmark::State& state, const Weights& w, std::size_t n, std::size_t k, isa path, std::size_t threads) {
  const std::vector<Weights>& copies = cold_copies(w, n, k);
  run_over(state, copies.data(), copies.size(), 1, n, k, path, threads);
}

template <class Format>
void register_format(const Format& f) {
  using S = typename Format::scheme_type;
  for (isa path : supported_isas()) {
    if (path == isa::scalar) continue;
    for (const shape& s : shapes)
      for (std::size_t m : ms)
        for (std::size_t threads : {1, 2}) {
          const std::string tail = std::string(f.name) + "/" + isa_name(path) + "/" + shape_name(s.n, s.k, m, threads);
          const std::size_t group = f.group_size;
          benchmark::RegisterBenchmark(("BM_sparse24/" + tail).c_str(), [=](benchmark::State& state) {
            run(state, sparse_weights<S>(s.n, s.k, group), m, s.n, s.k, path, threads);
          })->UseRealTime()->Unit(benchmark::kMicrosecond);
          benchmark::RegisterBenchmark(("BM_dense/" + tail).c_str(), [=](benchmark::State& state) {
            run(state, dense_weights<S>(s.n, s.k, group), m, s.n, s.k, path, threads);
          })->UseRealTime()->Unit(benchmark::kMicrosecond);
          if (m == 1) {
            const std::string cold = std::string(f.name) + "_cold/" + isa_name(path) + "/" + shape_name(s.n, s.k, m, threads);
            benchmark::RegisterBenchmark(("BM_sparse24/" + cold).c_str(), [=](benchmark::State& state) {
              run_cold(state, sparse_weights<S>(s.n, s.k, group), s.n, s.k, path, threads);
            })->UseRealTime()->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("BM_dense/" + cold).c_str(), [=](benchmark::State& state) {
              run_cold(state, dense_weights<S>(s.n, s.k, group), s.n, s.k, path, threads);
            })->UseRealTime()->Unit(benchmark::kMicrosecond);
          }
          for (compute mode : {compute::weight_only, compute::int8}) {
            if (mode == compute::int8 && !has_integer_path<typename S::format>) continue;
            const std::string suffix = mode == compute::int8 ? "_a8/" : "/";
            if (mode == compute::int8) {
              const std::string a8_tail = std::string(f.name) + suffix + isa_name(path) + "/" + shape_name(s.n, s.k, m, threads);
              benchmark::RegisterBenchmark(("BM_dense/" + a8_tail).c_str(), [=](benchmark::State& state) {
                run(state, dense_weights<S>(s.n, s.k, group), m, s.n, s.k, path, threads, mode);
              })->UseRealTime()->Unit(benchmark::kMicrosecond);
              benchmark::RegisterBenchmark(("BM_sparse24/" + a8_tail).c_str(), [=](benchmark::State& state) {
                run(state, sparse_weights<S>(s.n, s.k, group), m, s.n, s.k, path, threads, mode);
              })->UseRealTime()->Unit(benchmark::kMicrosecond);
            }
            if (m > 64) continue;  // BSR: M <= 64
            for (int percent : {50, 25, 10, 5}) {
              const std::string name = std::string("BM_bsr/") + f.name + suffix + isa_name(path) + "/32x32_d" +
                                       std::to_string(percent) + "/" + shape_name(s.n, s.k, m, threads);
              benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
                run(state, bsr_weights<S>(s.n, s.k, group, percent / 100.0), m, s.n, s.k, path, threads, mode);
              })->UseRealTime()->Unit(benchmark::kMicrosecond);
            }
            // Block shapes of the row kernels (not panels): 1 x 16 (row-wise), 4 x 4; groups of 16 / 4.
            for (int percent : {25, 10}) {
              const std::string tail = suffix + isa_name(path) + "/";
              const std::string rest = "_d" + std::to_string(percent) + "/" + shape_name(s.n, s.k, m, threads);
              const double d = percent / 100.0;
              if (is_mx_scheme<S>::value) continue;  // MX blocks of 32 do not fit
              benchmark::RegisterBenchmark(("BM_bsr/" + std::string(f.name) + tail + "1x16" + rest).c_str(), [=](benchmark::State& state) {
                run(state, bsr_weights<S, 1, 16>(s.n, s.k, group, d), m, s.n, s.k, path, threads, mode);
              })->UseRealTime()->Unit(benchmark::kMicrosecond);
              benchmark::RegisterBenchmark(("BM_bsr/" + std::string(f.name) + tail + "4x4" + rest).c_str(), [=](benchmark::State& state) {
                run(state, bsr_weights<S, 4, 4>(s.n, s.k, 4, d), m, s.n, s.k, path, threads, mode);
              })->UseRealTime()->Unit(benchmark::kMicrosecond);
            }
          }
        }
  }
}

template <class T>
void register_plain(const char* name) {
  for (isa path : supported_isas()) {
    if (path == isa::scalar) continue;
    for (const shape& s : shapes)
      for (std::size_t m : ms)
        for (std::size_t threads : {1, 2})
          benchmark::RegisterBenchmark(
              (std::string("BM_sparse24/") + name + "/" + isa_name(path) + "/" + shape_name(s.n, s.k, m, threads)).c_str(),
              [=](benchmark::State& state) { run(state, plain_sparse_weights<T>(s.n, s.k), m, s.n, s.k, path, threads); })
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
  }
}

const bool registered = [] {
  std::apply([](const auto&... f) { (register_format(f), ...); }, formats);
  register_plain<float>("f32");
  register_plain<bf16>("bf16");
  for (isa path : supported_isas()) {  // 4:8
    if (path == isa::scalar) continue;
    for (const shape& s : {shape{4096, 4096}, shape{4096, 14336}})
      for (std::size_t m : {1, 64, 512})
        for (std::size_t threads : {1, 2}) {
          const std::string tail = std::string(isa_name(path)) + "/" + shape_name(s.n, s.k, m, threads);
          benchmark::RegisterBenchmark(("BM_sparse48/int4/" + tail).c_str(), [=](benchmark::State& state) {
            run(state, sparse48_weights<scheme<int4, fp16>>(s.n, s.k, 128), m, s.n, s.k, path, threads);
          })->UseRealTime()->Unit(benchmark::kMicrosecond);
          benchmark::RegisterBenchmark(("BM_sparse48/f32/" + tail).c_str(), [=](benchmark::State& state) {
            run(state, sparse48_weights<float>(s.n, s.k, 0), m, s.n, s.k, path, threads);
          })->UseRealTime()->Unit(benchmark::kMicrosecond);
        }
  }
#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
  for (const shape& s : shapes)
    for (std::size_t m : ms)
      for (std::size_t threads : {1, 2})
        benchmark::RegisterBenchmark(("BM_dense/f32/openblas/" + shape_name(s.n, s.k, m, threads)).c_str(),
                                     [=](benchmark::State& state) {
                                       const std::vector<float> w = random_floats(s.n * s.k, 2), x = random_floats(m * s.k, 1);
                                       std::vector<float> y(m * s.n);
                                       peers::openblas_linear blas(m, s.n, s.k, w.data(), static_cast<int>(threads));
                                       for (auto _ : state) {
                                         blas.run(x.data(), y.data());
                                         benchmark::ClobberMemory();
                                       }
                                       set_gemm_counters(state, m, s.n, s.k, 4.0 * double(s.n) * double(s.k), 0.0);
                                     })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
#endif
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
