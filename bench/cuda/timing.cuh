// What the GPU benchmarks (bench_cuda*.cu) share: CUDA-event timing and the cuBLAS call check.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "lowbit/cuda.cuh"

// cuBLAS calls of the peers: a failure ends the benchmark with the call and its status.
#define CUBLAS_CHECK(call)                                                                         \
  do {                                                                                             \
    const cublasStatus_t s_ = (call);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                             \
      std::fprintf(stderr, "%s failed: %d\n", #call, int(s_));                                     \
      std::exit(1);                                                                                \
    }                                                                                              \
  } while (0)

namespace bench_cuda {

/// The mean time per launch (µs) of `iterations` launches, launch(i), between two events.
template <class F>
double round_us(F& launch, int iterations, cudaEvent_t start, cudaEvent_t stop) {
  LOWBIT_CUDA_CHECK(cudaEventRecord(start));
  for (int i = 0; i < iterations; ++i) launch(i);
  LOWBIT_CUDA_CHECK(cudaEventRecord(stop));
  LOWBIT_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  LOWBIT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  return 1000.0 * ms / iterations;
}

inline double median(std::vector<double> runs) {
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

/// Median over `repeats` runs of the mean time per launch (µs) of `iterations` launches,
/// launch(i) with i the launch's index (for rotating over copies), after `warmup` launches.
template <class F>
double time_us(F&& launch, int iterations, int repeats, int warmup) {
  cudaEvent_t start, stop;
  LOWBIT_CUDA_CHECK(cudaEventCreate(&start));
  LOWBIT_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) launch(i);
  std::vector<double> runs;
  for (int r = 0; r < repeats; ++r) runs.push_back(round_us(launch, iterations, start, stop));
  LOWBIT_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return median(runs);
}

/// Two launches timed in alternating rounds (a's `iterations` launches, then b's, `repeats` times)
/// after `warmup` launches of each: the medians of each's mean time per launch (µs). From M = 256
/// an H100 runs these GEMMs at its ~700 W power cap and its SM clock drops as the board heats
/// (docs/cuda-gemm-notes.md), so timings made one after the other depend on their order; taken in
/// turns, both see the same board.
template <class A, class B>
std::pair<double, double> time_interleaved_us(A&& a, B&& b, int iterations, int repeats, int warmup) {
  cudaEvent_t start, stop;
  LOWBIT_CUDA_CHECK(cudaEventCreate(&start));
  LOWBIT_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) a(i), b(i);
  std::vector<double> runs_a, runs_b;
  for (int r = 0; r < repeats; ++r) {
    runs_a.push_back(round_us(a, iterations, start, stop));
    runs_b.push_back(round_us(b, iterations, start, stop));
  }
  LOWBIT_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return {median(runs_a), median(runs_b)};
}

}  // namespace bench_cuda
