// all-MiniLM-L6-v2, the 6-layer BERT sentence encoder, end to end on lowbit: WordPiece tokens from
// the model's vocab.txt, weights from its model.safetensors, every linear layer through
// lowbit::gemm, attention through lowbit::attention::prefill, mean pooling and L2 normalization.
//
// 1. Checks the fp32 path against the real sentence-transformers (examples/data/
//    minilm_reference.txt, made by tests/data/gen/gen_minilm_reference.py): token ids identical and
//    cosine >= 0.9999 for every sentence, else the exit status is 1.
// 2. Prints a table: the same model with every linear layer quantized in each of lowbit's formats
//    (a recipe = format x algorithm x activations): bits per weight, sizes, cosine to the
//    reference embeddings (mean and worst), the relative output error of the linear layers on the
//    fp32 model's own activations, time per batch and speedup over fp32.
//
// usage: minilm <model dir> [reference.txt] [--threads N] [--repeats N] [--fp32-only] [--format NAME]
// (scripts/demo.sh installs the model with pip and passes its directory)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "minilm/bert.hpp"
#include "minilm/tokenizer.hpp"

namespace {

struct reference_sentence {
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> embedding;
};

std::vector<reference_sentence> read_reference(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<reference_sentence> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("sentence ", 0) == 0) {
      out.push_back({line.substr(9), {}, {}});
      continue;
    }
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    if (key == "tokens" && !out.empty()) {
      std::size_t n = 0;
      fields >> n;
      out.back().tokens.resize(n);
      for (auto& t : out.back().tokens) fields >> t;
    } else if (key == "embedding" && !out.empty()) {
      for (float v; fields >> v;) out.back().embedding.push_back(v);
    }
  }
  if (out.empty()) throw std::runtime_error(path + " holds no sentences");
  return out;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

/// How one model variant is made: each linear layer's weights -> a runnable linear. AWQ / GPTQ /
/// SparseGPT recipes are further entries here; they will need calibration inputs, which the fp32
/// run below already collects per layer (`calibration`).
struct recipe {
  std::string format, group, algorithm, activations;
  minilm::bert_encoder::linear_factory make;
};

template <class Scheme>
recipe rtn(const char* format, std::size_t group_size, lowbit::compute mode = lowbit::compute::weight_only) {
  const bool mx = lowbit::is_mx_scheme<Scheme>::value;
  std::string group = group_size ? std::to_string(group_size) : "channel";
  return {format, group, mx ? "MX" : "RTN", mode == lowbit::compute::int8 ? "int8" : "fp32",
          [=](const minilm::dense_linear& d) -> std::unique_ptr<minilm::linear> {
            const auto q = lowbit::quantize<Scheme>(d.weight.data(), d.out, d.in, d.in, lowbit::quant_options{group_size});
            return std::make_unique<minilm::lowbit_linear<Scheme>>(q, d.bias, mode);
          }};
}

std::vector<recipe> recipes() {
  using namespace lowbit;
  using lowbit::compute;
  return {
      rtn<scheme<int8, fp16>>("int8", 0),
      rtn<scheme<int8, fp16>>("int8", 0, compute::int8),
      rtn<scheme<fp8_e4m3, fp16>>("fp8_e4m3", 0),
      rtn<mx::int8>("mxint8", 32),
      rtn<scheme<int4, fp16>>("int4", 32),
      rtn<scheme<int4, fp16>>("int4", 64),
      rtn<scheme<int4, fp16>>("int4", 128),
      rtn<scheme<int4, fp16>>("int4", 128, compute::int8),
      rtn<scheme<uint4, fp16, true>>("uint4+zero", 128),
      rtn<scheme<nf4, fp16>>("nf4", 64),
      rtn<scheme<sf4, fp16>>("sf4", 64),
      rtn<scheme<fp4_e2m1, fp16>>("fp4_e2m1", 32),
      rtn<mx::fp4>("mxfp4", 32),
      rtn<mx::int4>("mxint4", 32),
      rtn<scheme<iq4_nl, fp16>>("iq4_nl", 32),
  };
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Best time of `repeats` forward passes over the batch (after one warm-up pass).
template <class F>
double best_time(int repeats, F&& forward) {
  forward();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    forward();
    best = std::min(best, seconds_since(start));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, reference_path = "examples/data/minilm_reference.txt";
  std::size_t threads = 0;
  int repeats = 5;
  bool fp32_only = false;
  std::string only;  // run only the recipes of this format
  for (int i = 1, positional = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) threads = std::strtoul(argv[++i], nullptr, 10);
    else if (arg == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--fp32-only") fp32_only = true;
    else if (arg == "--format" && i + 1 < argc) only = argv[++i];
    else if (positional == 0 && arg[0] != '-') model_dir = arg, ++positional;
    else if (positional == 1 && arg[0] != '-') reference_path = arg, ++positional;
    else {
      std::fprintf(stderr, "usage: %s <model dir> [reference.txt] [--threads N] [--repeats N] [--fp32-only] [--format NAME]\n", argv[0]);
      return 2;
    }
  }
  if (model_dir.empty()) {
    std::fprintf(stderr, "usage: %s <model dir> [reference.txt] [--threads N] [--repeats N] [--fp32-only] [--format NAME]\n", argv[0]);
    return 2;
  }

  try {
    const std::vector<reference_sentence> reference = read_reference(reference_path);
    const minilm::wordpiece_tokenizer tokenizer(model_dir + "/vocab.txt", 256);
    const minilm::bert_weights weights = minilm::bert_weights::load(model_dir + "/model.safetensors");
    lowbit::thread_pool pool(threads);
    std::printf("all-MiniLM-L6-v2 from %s: vocabulary %zu, %zu sentences, %zu threads, lowbit path %s\n\n",
                model_dir.c_str(), tokenizer.vocab_size(), reference.size(), pool.size(),
                lowbit::isa_name(lowbit::best_isa()));

    // Tokens, checked against the model's own tokenizer.
    std::vector<std::vector<int32_t>> batch;
    std::size_t tokens = 0, token_mismatches = 0;
    for (const auto& r : reference) {
      batch.push_back(tokenizer.encode(r.text));
      tokens += batch.back().size();
      if (batch.back() != r.tokens) {
        ++token_mismatches;
        std::printf("token mismatch: \"%s\"\n  ours:", r.text.c_str());
        for (int32_t t : batch.back()) std::printf(" %d", t);
        std::printf("\n  reference:");
        for (int32_t t : r.tokens) std::printf(" %d", t);
        std::printf("\n");
      }
    }

    // fp32: the check, and each linear layer's inputs (calibration data for later recipes, and
    // the inputs of the per-layer error below).
    std::size_t linear_params = 0;
    weights.for_each_linear([&](const minilm::dense_linear& d) { linear_params += d.out * d.in; });
    const minilm::bert_encoder fp32(weights, [](const minilm::dense_linear& d) { return std::make_unique<minilm::fp32_linear>(d); });
    std::map<std::string, std::vector<float>> calibration;
    const auto embeddings = fp32.embed(batch, pool, [&](const minilm::dense_linear& d, lowbit::matrix_view<const float> x) {
      calibration[d.name].assign(x.data, x.data + x.rows * x.cols);
    });
    const double fp32_seconds = best_time(repeats, [&] { fp32.embed(batch, pool); });
    double worst = 1, sum = 0, max_difference = 0;
    std::printf("fp32 path against sentence-transformers (tokens: %s):\n",
                token_mismatches ? "MISMATCH" : "identical");
    for (std::size_t s = 0; s < reference.size(); ++s) {
      const double c = cosine(embeddings[s], reference[s].embedding);
      worst = std::min(worst, c);
      sum += c;
      for (std::size_t i = 0; i < embeddings[s].size(); ++i)
        max_difference = std::max(max_difference, std::fabs(double(embeddings[s][i]) - reference[s].embedding[i]));
      std::string text = reference[s].text;
      if (text.size() > 60) {  // cut at a character boundary (not inside a UTF-8 sequence)
        std::size_t cut = 57;
        while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0u) == 0x80u) --cut;
        text = text.substr(0, cut) + "...";
      }
      std::printf("  %3zu tokens  cosine %.9f  1 - cosine %8.1e  %s\n", batch[s].size(), c, 1.0 - c, text.c_str());
    }
    const bool pass = token_mismatches == 0 && worst >= 0.9999;
    std::printf("fp32: cosine min %.9f mean %.9f, largest element difference %.1e, %zu token mismatches: %s\n", worst,
                sum / reference.size(), max_difference, token_mismatches, pass ? "PASS" : "FAIL (needs identical tokens and cosine >= 0.9999)");
    std::printf("fp32 forward: %zu tokens in %.1f ms (%.1f GFLOP/s in the linear layers' plain loops and the rest)\n\n",
                tokens, fp32_seconds * 1e3, 2.0 * tokens * linear_params / fp32_seconds * 1e-9);
    if (fp32_only) return pass ? 0 : 1;

    // The table.
    const double embedding_mib = (weights.word_embeddings.size() + weights.position_embeddings.size() +
                                  weights.token_type_embeddings.size()) * 4.0 / (1 << 20);
    const double fp32_linear_mib = fp32.linear_bytes() / double(1 << 20);
    std::printf("linear layers: %zu weights; embeddings (kept fp32) %.1f MiB; batch: %zu sentences, %zu tokens; best of %d\n\n",
                linear_params, embedding_mib, reference.size(), tokens, repeats);
    std::printf("| format | group | algorithm | activations | bits/weight | linear MiB | model MiB | mean cosine | worst cosine | layer error (mean / max) | ms / batch | speedup |\n");
    std::printf("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    std::printf("| fp32 | - | - | fp32 | 32 | %.1f | %.1f | %.6f | %.6f | 0 | %.1f | 1.00 |\n", fp32_linear_mib,
                fp32_linear_mib + embedding_mib, sum / reference.size(), worst, fp32_seconds * 1e3);
    std::fflush(stdout);
    for (const recipe& r : recipes()) {
      if (!only.empty() && r.format != only) continue;
      const minilm::bert_encoder model(weights, r.make);
      // Per-layer output error ||XWᵀ - XŴᵀ|| / ||XWᵀ|| on the fp32 model's inputs to that layer
      // (both sides carry the same bias, which the difference cancels and the norm leaves out).
      std::vector<double> layer_errors;
      for (const auto& layer : weights.encoder)
        for (const minilm::dense_linear* d : {&layer.query, &layer.key, &layer.value, &layer.attention_output,
                                              &layer.intermediate, &layer.output}) {
          const std::vector<float>& x = calibration.at(d->name);
          const std::size_t m = x.size() / d->in;
          std::vector<float> exact(m * d->out), approx(m * d->out);
          const lowbit::matrix_view<const float> xv(x.data(), m, d->in);
          minilm::fp32_linear(*d).forward(xv, {exact.data(), m, d->out}, pool);
          r.make(*d)->forward(xv, {approx.data(), m, d->out}, pool);
          double error = 0, norm = 0;
          for (std::size_t i = 0; i < m * d->out; ++i) {
            const double y = exact[i] - d->bias[i % d->out];
            error += (double(approx[i]) - exact[i]) * (double(approx[i]) - exact[i]);
            norm += y * y;
          }
          layer_errors.push_back(std::sqrt(error / norm));
        }
      double mean_error = 0;
      for (double e : layer_errors) mean_error += e / layer_errors.size();
      const double max_error = *std::max_element(layer_errors.begin(), layer_errors.end());

      std::vector<std::vector<float>> out;
      const double t = best_time(repeats, [&] { out = model.embed(batch, pool); });
      double q_worst = 1, q_sum = 0;
      for (std::size_t s = 0; s < reference.size(); ++s) {
        const double c = cosine(out[s], reference[s].embedding);
        q_worst = std::min(q_worst, c);
        q_sum += c;
      }
      const double mib = model.linear_bytes() / double(1 << 20);
      std::printf("| %s | %s | %s | %s | %.2f | %.1f | %.1f | %.6f | %.6f | %.4f / %.4f | %.1f | %.2f |\n",
                  r.format.c_str(), r.group.c_str(), r.algorithm.c_str(), r.activations.c_str(),
                  8.0 * model.linear_bytes() / linear_params, mib, mib + embedding_mib, q_sum / reference.size(),
                  q_worst, mean_error, max_error, t * 1e3, fp32_seconds / t);
      std::fflush(stdout);
    }
    return pass ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minilm: %s\n", e.what());
    return 2;
  }
}
