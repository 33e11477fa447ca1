// lowbit demo: quantize one weight matrix in every format lowbit has and print, per format, the
// bits a weight costs, how much of the signal survives, and how fast each ISA path dequantizes it.
//
// The matrix is 4096 x 4096 with Student-t (5 degrees of freedom) entries: heavier tails than a
// Gaussian, like real LLM weights. Scales are per group of 32 along K (64 for NF4, as bitsandbytes).
#include <lowbit/lowbit.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr std::size_t rows = 4096, cols = 4096;

std::vector<float> student_t_matrix() {
  std::mt19937 rng(2026);
  std::student_t_distribution<float> t(5.0f);
  std::vector<float> w(rows * cols);
  for (auto& v : w) v = 0.02f * t(rng);
  return w;
}

struct row_result {
  std::string name;
  double bits_per_weight;
  double sqnr_db;
  std::vector<double> gelems_per_s;  // per ISA path, in supported_isas() order
};

template <class Scheme>
row_result measure(const char* name, const std::vector<float>& w, std::size_t group) {
  using namespace lowbit;
  const quantized_matrix<Scheme> q = quantize<Scheme>(w.data(), rows, cols, cols, quant_options{group});
  std::vector<float> back(rows * cols);
  row_result result{name, 8.0 * static_cast<double>(q.storage_bytes()) / static_cast<double>(rows * cols), 0, {}};
  for (isa path : supported_isas()) {
    dequantize(q.view(), back.data(), cols, serial_executor{}, path);  // warm up
    const int repeats = path == isa::scalar ? 1 : 5;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) dequantize(q.view(), back.data(), cols, serial_executor{}, path);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
    result.gelems_per_s.push_back(static_cast<double>(rows * cols) / seconds * 1e-9);
  }
  double signal = 0, noise = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    signal += double(w[i]) * w[i];
    noise += (double(w[i]) - back[i]) * (double(w[i]) - back[i]);
  }
  result.sqnr_db = 10.0 * std::log10(signal / noise);
  return result;
}

}  // namespace

int main() {
  using namespace lowbit;
  std::printf("lowbit %d.%d.%d demo: a %zu x %zu Student-t(5) weight matrix in every format\n", LOWBIT_VERSION_MAJOR,
              LOWBIT_VERSION_MINOR, LOWBIT_VERSION_PATCH, rows, cols);
  std::printf("ISA paths on this CPU:");
  for (isa path : supported_isas()) std::printf(" %s", isa_name(path));
  std::printf("  (best: %s)\n\n", isa_name(best_isa()));
  const auto w = student_t_matrix();

  std::vector<row_result> results;
  results.push_back(measure<scheme<int8, fp16>>("int8, fp16 scale / 32", w, 32));
  results.push_back(measure<scheme<uint8, fp16, true>>("uint8 + zero point, fp16 / 32", w, 32));
  results.push_back(measure<scheme<int4, fp16>>("int4, fp16 scale / 32", w, 32));
  results.push_back(measure<scheme<uint4, fp16, true>>("uint4 + zero point, fp16 / 32", w, 32));
  results.push_back(measure<scheme<int4, fp16>>("int4, fp16 scale / 128", w, 128));
  results.push_back(measure<scheme<nf4, float>>("NF4, fp32 absmax / 64", w, 64));
  results.push_back(measure<scheme<sf4, float>>("SF4, fp32 absmax / 64", w, 64));
  results.push_back(measure<scheme<iq4_nl, fp16>>("IQ4_NL, fp16 / 32", w, 32));
  results.push_back(measure<scheme<fp4_e2m1, fp16>>("FP4 E2M1, fp16 / 32", w, 32));
  results.push_back(measure<scheme<fp8_e4m3, fp16>>("FP8 E4M3, fp16 / 32", w, 32));
  results.push_back(measure<scheme<fp8_e5m2, fp16>>("FP8 E5M2, fp16 / 32", w, 32));
  results.push_back(measure<mx::fp4>("MXFP4", w, mx::block_size));
  results.push_back(measure<mx::fp6_e3m2>("MXFP6 E3M2", w, mx::block_size));
  results.push_back(measure<mx::fp6_e2m3>("MXFP6 E2M3", w, mx::block_size));
  results.push_back(measure<mx::fp8_e4m3>("MXFP8 E4M3", w, mx::block_size));
  results.push_back(measure<mx::fp8_e5m2>("MXFP8 E5M2", w, mx::block_size));
  results.push_back(measure<mx::int8>("MXINT8", w, mx::block_size));
  results.push_back(measure<mx::int4>("MXINT4", w, mx::block_size));

  std::printf("| format | bits/weight | SQNR (dB) |");
  for (isa path : supported_isas()) std::printf(" %s (G elem/s) |", isa_name(path));
  std::printf("\n|---|---:|---:|");
  for (std::size_t i = 0; i < supported_isas().size(); ++i) std::printf("---:|");
  std::printf("\n");
  for (const auto& r : results) {
    std::printf("| %s | %.3f | %.2f |", r.name.c_str(), r.bits_per_weight, r.sqnr_db);
    for (double g : r.gelems_per_s) std::printf(" %.2f |", g);
    std::printf("\n");
  }
  std::printf("\nSQNR = 10 log10(sum w^2 / sum (w - dequantized)^2). Dequantization: one thread, fp32 output,"
              " a 64 MiB+ matrix (memory-bound for the fast paths).\n");
  return 0;
}
