// all-MiniLM-L6-v2, the 6-layer BERT sentence encoder, end to end on lowbit: WordPiece tokens from
// the model's vocab.txt, weights from its model.safetensors, every linear layer through
// lowbit::gemm, attention through lowbit::attention::prefill, mean pooling and L2 normalization.
//
// 1. Checks the fp32 path against the real sentence-transformers (examples/data/
//    minilm_reference.txt, made by tests/data/gen/gen_minilm_reference.py): token ids identical and
//    cosine >= 0.9999 for every sentence, else the exit status is 1.
// 2. Prints a table: the same model with every linear layer quantized by each recipe (format x
//    algorithm x sparsity x activations): bits per weight, sizes, cosine to the reference
//    embeddings (mean and worst), the relative output error of the linear layers on the fp32
//    model's own inputs to them, time per batch and per sentence (a batch of one: the memory-bound
//    case), speedups over fp32 (the faster of plain loops and OpenBLAS sgemm when built with it),
//    time to quantize. The default run has RTN and 2:4 Wanda for every format and the W8A8 / W4A8
//    rows; --algorithms adds AWQ, GPTQ and SparseGPT for every format (the format x {RTN, AWQ,
//    GPTQ} x {dense, 2:4 Wanda, 2:4 SparseGPT} cross product), the earlier table's other rows and
//    AWQ with its scales folded into the model (lowbit's float64 reference algorithms over the
//    thread pool: tens of minutes on 2 cores).
//
// usage: minilm <model dir> [reference.txt] [--threads N] [--repeats N] [--fp32-only]
//               [--format NAME] [--algorithms] [--folded-awq-only]
// (scripts/demo.sh installs the model with pip and passes its directory)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <lowbit/layout/panel.hpp>
#include <lowbit/prune/prune24.hpp>
#include <lowbit/prune/sparsegpt.hpp>
#include <lowbit/quant/awq.hpp>
#include <lowbit/quant/clip_search.hpp>
#include <lowbit/quant/gptq.hpp>
#include <lowbit/quant/quantize.hpp>
#include <lowbit/quant/smoothquant.hpp>
#include <lowbit/sparse/sparse24_matrix.hpp>

#include "minilm/bert.hpp"
#include "minilm/blas_linear.hpp"
#include "minilm/tokenizer.hpp"

namespace {

struct reference_sentence {
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> embedding;
};

/// The sentences with embeddings, and in tokenizer_cases the texts that only check token ids.
std::vector<reference_sentence> read_reference(const std::string& path, std::vector<reference_sentence>& tokenizer_cases) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<reference_sentence> out;
  reference_sentence* last = nullptr;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("sentence ", 0) == 0) {
      out.push_back({line.substr(9), {}, {}});
      last = &out.back();
      continue;
    }
    if (line.rfind("tokenizer_case ", 0) == 0) {
      tokenizer_cases.push_back({line.substr(15), {}, {}});
      last = &tokenizer_cases.back();
      continue;
    }
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    if (key == "tokens" && last) {
      std::size_t n = 0;
      fields >> n;
      last->tokens.resize(n);
      for (auto& t : last->tokens) fields >> t;
    } else if (key == "embedding" && last) {
      for (float v; fields >> v;) last->embedding.push_back(v);
    }
  }
  if (out.empty()) throw std::runtime_error(path + " holds no sentences");
  return out;
}

/// Prints both token lists when they differ; returns whether they do.
bool token_mismatch(const std::string& text, const std::vector<int32_t>& ours, const std::vector<int32_t>& reference) {
  if (ours == reference) return false;
  std::printf("token mismatch: \"%s\"\n  ours:", text.c_str());
  for (int32_t t : ours) std::printf(" %d", t);
  std::printf("\n  reference:");
  for (int32_t t : reference) std::printf(" %d", t);
  std::printf("\n");
  return true;
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

/// Text the algorithms that need activations (AWQ, GPTQ, SmoothQuant, Wanda, SparseGPT) calibrate
/// on: other sentences than the evaluated ones, so the table does not test on its training data.
const char* const calibration_text[] = {
    "The museum reopened last spring after a renovation that took almost four years and cost far more than planned.",
    "Can you recommend a good book about the history of mathematics for a curious teenager?",
    "Heavy rain is expected across the northern region tonight, with winds of up to 90 km/h.",
    "She plays the violin in a small orchestra and teaches music at the local school on weekends.",
    "To reset the router, hold the button on the back for ten seconds until the light blinks twice.",
    "Scientists have discovered a new species of frog in the rainforest, smaller than a fingernail.",
    "The recipe calls for two cups of flour, one egg, a pinch of salt and a little warm milk.",
    "Interest rates rose again this quarter, and economists disagree about what will happen next year.",
    "Our team won the match 3-1 after a difficult first half; the goalkeeper saved a penalty.",
    "Machine translation has improved a lot, but idioms and jokes are still hard to get right.",
    "The train to the airport leaves every twenty minutes from platform four, except on Sundays.",
    "He wrote the letter by hand, sealed it carefully, and walked to the post office in the snow.",
};

/// More calibration text: the prose lines of the model card (README.md) shipped with the weights
/// (not code, tables or headings). About a thousand tokens with the sentences above: GPTQ needs
/// well over a few hundred (its Hessian is 1536 x 1536 for the FFN's second linear) to generalize.
std::vector<std::string> model_card_prose(const std::string& model_dir) {
  std::ifstream in(model_dir + "/README.md");
  std::vector<std::string> lines;
  bool code = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) code = !code;
    const std::size_t words = static_cast<std::size_t>(std::count(line.begin(), line.end(), ' ')) + 1;
    if (code || line.empty() || std::string("|<#-*`").find(line[0]) != std::string::npos || words < 6) continue;
    lines.push_back(line);
  }
  return lines;
}

/// Every step-th row of x: at most `rows` of them (AWQ's search costs samples x outputs x inputs
/// per grid point, so it gets a subsample).
std::vector<float> subsample_rows(lowbit::matrix_view<const float> x, std::size_t rows) {
  const std::size_t step = (x.rows + rows - 1) / rows;
  std::vector<float> out;
  for (std::size_t i = 0; i < x.rows; i += step) out.insert(out.end(), x.data + i * x.ld, x.data + i * x.ld + x.cols);
  return out;
}

/// How one model variant is made: a layer's float weights, and the fp32 model's inputs to that
/// layer on the calibration text, give a runnable linear. A new algorithm is one more entry in
/// recipes() below.
using recipe_factory = std::function<std::unique_ptr<minilm::linear>(
    const minilm::dense_linear&, lowbit::matrix_view<const float> calibration, lowbit::thread_pool& pool)>;
struct recipe {
  std::string format, group, algorithm, sparsity, activations;
  recipe_factory make;
  bool slow = false;  ///< only with --algorithms (the cross product's AWQ / GPTQ / SparseGPT and the extra rows)
};

template <class Scheme>
std::unique_ptr<minilm::linear> packed(const lowbit::quantized_matrix<Scheme>& q, const minilm::dense_linear& d,
                                       lowbit::compute mode = lowbit::compute::weight_only,
                                       minilm::input_transform input = {}, std::vector<float> smoothing = {}) {
  return std::make_unique<minilm::lowbit_linear<lowbit::panel_matrix<Scheme>>>(lowbit::pack_panels(q.view()), d.bias, mode,
                                                                              std::move(input), std::move(smoothing));
}

std::string group_name(std::size_t group_size) { return group_size ? std::to_string(group_size) : "channel"; }

/// Round to nearest (MX: the OCP rule), weight-only or with int8 activations.
template <class Scheme>
recipe rtn(const char* format, std::size_t group_size, lowbit::compute mode = lowbit::compute::weight_only) {
  return {format, group_name(group_size), lowbit::is_mx_scheme<Scheme>::value ? "MX" : "RTN", "-",
          mode == lowbit::compute::int8 ? "int8" : "fp32",
          [=](const minilm::dense_linear& d, lowbit::matrix_view<const float>, lowbit::thread_pool&) {
            return packed(lowbit::quantize<Scheme>(d.weight.data(), d.out, d.in, d.in, {group_size}), d, mode);
          }};
}

/// RTN with each group's clip ratio chosen for the smallest squared weight error.
template <class Scheme>
recipe rtn_mse(const char* format, std::size_t group_size) {
  return {format, group_name(group_size), "RTN+MSE clip", "-", "fp32",
          [=](const minilm::dense_linear& d, lowbit::matrix_view<const float>, lowbit::thread_pool&) {
            return packed(lowbit::quantize_rtn_mse<Scheme>(d.weight.data(), d.out, d.in, d.in, {group_size}), d);
          },
          true};
}

template <class Scheme>
recipe awq(const char* format, std::size_t group_size) {
  return {format, group_name(group_size), "AWQ", "-", "fp32",
          [=](const minilm::dense_linear& d, lowbit::matrix_view<const float> x, lowbit::thread_pool& pool) {
            lowbit::awq_options options;
            options.group_size = group_size;
            const std::vector<float> sample = subsample_rows(x, 256);
            auto r = lowbit::quantize_awq<Scheme>(d.weight.data(), d.out, d.in, d.in, sample.data(), sample.size() / d.in, options,
                                                  pool);
            return packed(r.weights, d, lowbit::compute::weight_only, {std::move(r.input_scales), {}});
          },
          true};
}

template <class Scheme>
recipe gptq(const char* format, std::size_t group_size, bool act_order) {
  return {format, group_name(group_size), act_order ? "GPTQ act-order" : "GPTQ", "-", "fp32",
          [=](const minilm::dense_linear& d, lowbit::matrix_view<const float> x, lowbit::thread_pool& pool) {
            lowbit::gptq_options options;
            options.group_size = group_size;
            options.act_order = act_order;
            auto r = lowbit::quantize_gptq<Scheme>(d.weight.data(), d.out, d.in, d.in, x.data, x.rows, options, pool);
            return packed(r.weights, d, lowbit::compute::weight_only, {{}, std::move(r.input_order)});
          },
          true};
}

/// W8A8 with SmoothQuant (alpha 0.5): activation outliers moved into the weights per channel.
template <class Scheme>
recipe smoothquant(const char* format, std::size_t group_size) {
  return {format, group_name(group_size), "SmoothQuant", "-", "int8",
          [=](const minilm::dense_linear& d, lowbit::matrix_view<const float> x, lowbit::thread_pool&) {
            const std::vector<float> absmax = lowbit::activation_absmax(x.data, x.rows, x.cols);
            std::vector<float> s = lowbit::smoothquant_scales(absmax.data(), d.weight.data(), d.out, d.in, d.in);
            const std::vector<float> w = lowbit::smooth_weights(d.weight.data(), d.out, d.in, d.in, s);
            return packed(lowbit::quantize<Scheme>(w.data(), d.out, d.in, d.in, {group_size}), d, lowbit::compute::int8,
                          {}, std::move(s));
          }};
}

/// 2:4 sparsity: magnitude or Wanda pruning then RTN of the kept values, or SparseGPT (both at
/// once); group_size counts kept values.
enum class pruning { magnitude, wanda, sparsegpt };
template <class Scheme>
recipe sparse24(const char* format, std::size_t group_size, pruning how) {
  const char* names[] = {"magnitude + RTN", "Wanda + RTN", "SparseGPT"};
  return {format, group_name(group_size), names[static_cast<int>(how)], "2:4", "fp32",
          [=](const minilm::dense_linear& d, lowbit::matrix_view<const float> x,
              lowbit::thread_pool& pool) -> std::unique_ptr<minilm::linear> {
            lowbit::sparse24_matrix<Scheme> w;
            if (how == pruning::sparsegpt) {
              lowbit::sparsegpt_options options;
              options.group_size = group_size;
              w = lowbit::prune_sparsegpt24<Scheme>(d.weight.data(), d.out, d.in, d.in, x.data, x.rows, options, pool);
            } else {
              const std::vector<float> norms = how == pruning::wanda ? lowbit::activation_norms(x) : std::vector<float>{};
              w = lowbit::prune_and_quantize24<Scheme>(d.weight.data(), d.out, d.in, d.in, norms.empty() ? nullptr : norms.data(),
                                                       {group_size});
            }
            return std::make_unique<minilm::lowbit_linear<lowbit::sparse24_matrix<Scheme>>>(std::move(w), d.bias,
                                                                                          lowbit::compute::weight_only);
          },
          how != pruning::wanda};
}

/// The cross product for one format: {RTN, AWQ, GPTQ} dense, 2:4 Wanda + RTN, 2:4 SparseGPT (its
/// error feedback is GPTQ's; AWQ or GPTQ after a Wanda mask is not a recipe lowbit has).
template <class Scheme>
void cross_product(std::vector<recipe>& out, const char* format, std::size_t group_size) {
  out.push_back(rtn<Scheme>(format, group_size));
  out.push_back(awq<Scheme>(format, group_size));
  out.push_back(gptq<Scheme>(format, group_size, false));
  out.push_back(sparse24<Scheme>(format, group_size, pruning::wanda));
  out.push_back(sparse24<Scheme>(format, group_size, pruning::sparsegpt));
}

std::vector<recipe> recipes() {
  using namespace lowbit;
  using lowbit::compute;
  using int4_fp16 = scheme<int4, fp16>;
  std::vector<recipe> out;
  // Every format at its usual granularity: 8-bit per channel, 4-bit in groups of 64 (the Student
  // Float paper's comparison: INT4, NF4, SF4, FP4 at the same group), block formats at 32.
  cross_product<scheme<int8, fp16>>(out, "int8", 0);
  cross_product<scheme<fp8_e4m3, fp16>>(out, "fp8_e4m3", 0);
  cross_product<mx::int8>(out, "mxint8", 32);
  cross_product<int4_fp16>(out, "int4", 64);
  cross_product<scheme<nf4, fp16>>(out, "nf4", 64);
  cross_product<scheme<sf4, fp16>>(out, "sf4", 64);
  cross_product<scheme<fp4_e2m1, fp16>>(out, "fp4_e2m1", 64);
  cross_product<mx::int4>(out, "mxint4", 32);
  cross_product<scheme<iq4_nl, fp16>>(out, "iq4_nl", 32);
  // Activations in int8 (W8A8 / W4A8) and the other rows of the earlier table.
  for (recipe r : {rtn<scheme<int8, fp16>>("int8", 0, compute::int8), smoothquant<scheme<int8, fp16>>("int8", 0),
                   rtn<int4_fp16>("int4", 64, compute::int8)})
    out.push_back(std::move(r));
  for (recipe r : {rtn<int4_fp16>("int4", 32), rtn<int4_fp16>("int4", 128), rtn_mse<int4_fp16>("int4", 128),
                   awq<int4_fp16>("int4", 128), gptq<int4_fp16>("int4", 128, false), gptq<int4_fp16>("int4", 128, true),
                   rtn<scheme<uint4, fp16, true>>("uint4+zero", 128), awq<scheme<uint4, fp16, true>>("uint4+zero", 128),
                   gptq<scheme<uint4, fp16, true>>("uint4+zero", 128, false), rtn<scheme<fp4_e2m1, fp16>>("fp4_e2m1", 32),
                   rtn<mx::fp4>("mxfp4", 32), sparse24<int4_fp16>("int4", 64, pruning::magnitude)}) {
    r.slow = true;
    out.push_back(std::move(r));
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

using layer_inputs = std::map<std::string, std::vector<float>>;

/// Rows r0 .. r0 + rows of q, as a matrix of their own (codes, scales and zero points copied).
template <class Scheme>
lowbit::quantized_matrix<Scheme> row_slice(const lowbit::quantized_matrix<Scheme>& q, std::size_t r0, std::size_t rows) {
  lowbit::quantized_matrix<Scheme> out(rows, q.cols(), q.group_size());
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t k = 0; k < q.cols(); ++k) out.set_code(r, k, q.code(r0 + r, k));
    for (std::size_t g = 0; g < q.groups_per_row(); ++g) {
      out.scale(r, g) = q.scale(r0 + r, g);
      if constexpr (Scheme::has_zero) out.zero(r, g) = q.zero(r0 + r, g);
    }
  }
  return out;
}

/// AWQ with its scales folded into the model (minilm::layer_folds says where, and why not into
/// LayerNorm's own gamma and beta in BERT). Per layer: the attention output projection's search
/// first, its s folded into V's rows and bias; then one s for Q, K and V together (they share
/// their input and so the LayerNorm output it is folded into: AWQ searches them jointly), the
/// FFN's first linear and the FFN's second. Each linear holds Q(W diag(s)).
template <class Scheme>
struct awq_folded {
  std::map<std::string, lowbit::quantized_matrix<Scheme>> weights;  ///< by layer name
  std::map<std::string, std::vector<float>> scales;  ///< each linear's s, applied by the folds
  std::map<std::string, std::vector<float>> into_value;  ///< the attention output's s, folded into V
  std::map<std::string, minilm::dense_linear> value;  ///< V with its rows and bias divided by the next layer's s
  std::vector<minilm::layer_folds> folds;
  double seconds = 0;

  awq_folded(const minilm::bert_weights& w, const layer_inputs& calibration, std::size_t group_size, lowbit::thread_pool& pool) {
    const auto start = std::chrono::steady_clock::now();
    constexpr std::size_t H = minilm::bert_weights::hidden;
    const auto search = [&](const float* weight, std::size_t rows, const minilm::dense_linear& input_of) {
      const std::vector<float>& c = calibration.at(input_of.name);
      const std::vector<float> sample = subsample_rows({c.data(), c.size() / input_of.in, input_of.in}, 256);
      lowbit::awq_options options;
      options.group_size = group_size;
      return lowbit::quantize_awq<Scheme>(weight, rows, input_of.in, input_of.in, sample.data(), sample.size() / input_of.in,
                                          options, pool);
    };
    for (const auto& l : w.encoder) {
      auto o = search(l.attention_output.weight.data(), H, l.attention_output);
      minilm::dense_linear v = l.value;
      for (std::size_t c = 0; c < H; ++c) {
        for (std::size_t j = 0; j < H; ++j) v.weight[c * H + j] /= o.input_scales[c];
        v.bias[c] /= o.input_scales[c];
      }
      std::vector<float> qkv(l.query.weight);
      qkv.insert(qkv.end(), l.key.weight.begin(), l.key.weight.end());
      qkv.insert(qkv.end(), v.weight.begin(), v.weight.end());
      auto joint = search(qkv.data(), 3 * H, l.query);
      auto up = search(l.intermediate.weight.data(), l.intermediate.out, l.intermediate);
      auto down = search(l.output.weight.data(), l.output.out, l.output);
      weights.emplace(l.query.name, row_slice(joint.weights, 0, H));
      weights.emplace(l.key.name, row_slice(joint.weights, H, H));
      weights.emplace(l.value.name, row_slice(joint.weights, 2 * H, H));
      weights.emplace(l.attention_output.name, std::move(o.weights));
      weights.emplace(l.intermediate.name, std::move(up.weights));
      weights.emplace(l.output.name, std::move(down.weights));
      for (const auto* d : {&l.query, &l.key, &l.value}) scales[d->name] = joint.input_scales;
      scales[l.intermediate.name] = up.input_scales;
      into_value[l.attention_output.name] = o.input_scales;
      scales[l.output.name] = down.input_scales;
      folds.push_back({joint.input_scales, up.input_scales, down.input_scales});
      value.emplace(l.value.name, std::move(v));
    }
    seconds = seconds_since(start);
  }

  /// The float layer that the folded model runs in place of d: W diag(s) (V: its folded rows too),
  /// with its bias (V: folded).
  minilm::dense_linear effective(const minilm::dense_linear& d) const {
    minilm::dense_linear out = value.count(d.name) ? value.at(d.name) : d;
    for (const auto* m : {&scales, &into_value}) {
      const auto s = m->find(d.name);
      if (s == m->end()) continue;
      for (std::size_t r = 0; r < out.out; ++r)
        for (std::size_t j = 0; j < out.in; ++j) out.weight[r * out.in + j] *= s->second[j];
    }
    return out;
  }
};



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

/// The two timings of the table: the whole batch in one forward pass (compute-bound: every weight
/// is read once for ~600 tokens), and one sentence at a time (a batch of one, 5-30 tokens: the
/// weights are read once per sentence, so their size decides), as seconds per sentence.
struct timings {
  double batch = 0, sentence = 0;
};
timings time_model(const minilm::bert_encoder& model, const std::vector<std::vector<int32_t>>& batch, int repeats,
                   lowbit::thread_pool& pool) {
  timings t;
  t.batch = best_time(repeats, [&] { model.embed(batch, pool); });
  t.sentence = best_time(repeats, [&] {
    for (const auto& sentence : batch) model.embed({sentence}, pool);
  }) / static_cast<double>(batch.size());
  return t;
}

void usage(const char* program) {
  std::fprintf(stderr, "usage: %s <model dir> [reference.txt] [--threads N] [--repeats N] [--fp32-only] [--format NAME] "
                       "[--algorithms] [--folded-awq-only]\n", program);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, reference_path = "examples/data/minilm_reference.txt";
  std::size_t threads = 0;
  int repeats = 5;
  bool fp32_only = false;
  std::string only;         // run only the recipes of this format
  bool algorithms = false;  // add the slow ones (AWQ, GPTQ, SparseGPT: minutes)
  bool folded_only = false;  // only the folded-AWQ rows and check
  for (int i = 1, positional = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) threads = std::strtoul(argv[++i], nullptr, 10);
    else if (arg == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--fp32-only") fp32_only = true;
    else if (arg == "--format" && i + 1 < argc) only = argv[++i];
    else if (arg == "--algorithms") algorithms = true;
    else if (arg == "--folded-awq-only") folded_only = true;
    else if (positional == 0 && arg[0] != '-') model_dir = arg, ++positional;
    else if (positional == 1 && arg[0] != '-') reference_path = arg, ++positional;
    else {
      usage(argv[0]);
      return 2;
    }
  }
  if (model_dir.empty()) {
    usage(argv[0]);
    return 2;
  }

  try {
    std::vector<reference_sentence> tokenizer_cases;
    const std::vector<reference_sentence> reference = read_reference(reference_path, tokenizer_cases);
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
      token_mismatches += token_mismatch(r.text, batch.back(), r.tokens);
    }
    for (const auto& r : tokenizer_cases) token_mismatches += token_mismatch(r.text, tokenizer.encode(r.text), r.tokens);

    // fp32: the check, and each linear layer's inputs on the evaluated sentences (for the
    // per-layer error below) and on the calibration text (for the algorithms that need data).
    std::size_t linear_params = 0;
    weights.for_each_linear([&](const minilm::dense_linear& d) { linear_params += d.out * d.in; });
    const minilm::bert_encoder fp32(weights, [](const minilm::dense_linear& d) { return std::make_unique<minilm::fp32_linear>(d); });
    const auto recorder = [](layer_inputs& to) {
      return [&to](const minilm::dense_linear& d, lowbit::matrix_view<const float> x) {
        to[d.name].assign(x.data, x.data + x.rows * x.cols);
      };
    };
    layer_inputs evaluation_inputs, calibration_inputs;
    const auto embeddings = fp32.embed(batch, pool, recorder(evaluation_inputs));
    std::vector<std::vector<int32_t>> calibration_batch;
    std::size_t calibration_tokens = 0;
    std::vector<std::string> calibration_texts(std::begin(calibration_text), std::end(calibration_text));
    for (const std::string& line : model_card_prose(model_dir)) calibration_texts.push_back(line);
    for (const std::string& text : calibration_texts) {
      calibration_batch.push_back(tokenizer.encode(text));
      calibration_tokens += calibration_batch.back().size();
    }
    fp32.embed(calibration_batch, pool, recorder(calibration_inputs));
    const timings fp32_time = time_model(fp32, batch, repeats, pool);
#if defined(MINILM_HAVE_OPENBLAS)
    openblas_set_num_threads(1);  // blas_linear runs one sgemm per pool thread
    const minilm::bert_encoder blas(weights, [](const minilm::dense_linear& d) { return std::make_unique<minilm::blas_linear>(d); });
    const auto blas_embeddings = blas.embed(batch, pool);
    const timings blas_time = time_model(blas, batch, repeats, pool);
    // The speedups are over the faster fp32 model in each column (OpenBLAS's sgemm or the plain
    // loops: on a 600-token batch GCC's register-blocked loops can beat OpenBLAS's kernels).
    const timings baseline{std::min(fp32_time.batch, blas_time.batch), std::min(fp32_time.sentence, blas_time.sentence)};
    const char* const baseline_name = "the faster fp32 row of each column";
#else
    const timings baseline = fp32_time;
    const char* const baseline_name = "fp32 with plain-loop linears (built without OpenBLAS)";
#endif
    double worst = 1, sum = 0, max_difference = 0;
    std::printf("fp32 path against sentence-transformers (tokens of these and %zu more texts: %s):\n",
                tokenizer_cases.size(), token_mismatches ? "MISMATCH" : "identical");
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
    std::printf("fp32 forward: %zu tokens in %.1f ms (%.1f GFLOP/s in the linear layers' plain loops and the rest)\n",
                tokens, fp32_time.batch * 1e3, 2.0 * tokens * linear_params / fp32_time.batch * 1e-9);
#if defined(MINILM_HAVE_OPENBLAS)
    double blas_worst = 1;
    for (std::size_t s = 0; s < reference.size(); ++s) blas_worst = std::min(blas_worst, cosine(blas_embeddings[s], reference[s].embedding));
    std::printf("fp32 forward with OpenBLAS sgemm linears: %.1f ms (%.1f GFLOP/s), worst cosine %.9f\n", blas_time.batch * 1e3,
                2.0 * tokens * linear_params / blas_time.batch * 1e-9, blas_worst);
#endif
    std::printf("\n");
    if (fp32_only) return pass ? 0 : 1;

    // The table.
    const double embedding_mib = (weights.word_embeddings.size() + weights.position_embeddings.size() +
                                  weights.token_type_embeddings.size()) * 4.0 / (1 << 20);
    const double fp32_linear_mib = fp32.linear_bytes() / double(1 << 20);
    std::printf("linear layers: %zu weights; embeddings (kept fp32) %.1f MiB; batch: %zu sentences, %zu tokens; "
                "calibration: %zu other sentences, %zu tokens; times: best of %d; speedups over %s\n\n",
                linear_params, embedding_mib, reference.size(), tokens, calibration_batch.size(), calibration_tokens, repeats,
                baseline_name);
    std::printf("| format | group | algorithm | sparsity | activations | bits/weight | linear MiB | model MiB | mean cosine | "
                "worst cosine | layer error (mean / max) | ms / batch | speedup | ms / sentence | speedup | quantize s |\n");
    std::printf("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    const auto fp32_row = [&](const char* name, const timings& t) {
      std::printf("| fp32 | - | %s | - | fp32 | 32 | %.1f | %.1f | %.6f | %.6f | 0 | %.1f | %.2f | %.2f | %.2f | - |\n", name,
                  fp32_linear_mib, fp32_linear_mib + embedding_mib, sum / reference.size(), worst, t.batch * 1e3,
                  baseline.batch / t.batch, t.sentence * 1e3, baseline.sentence / t.sentence);
    };
    fp32_row("plain loops", fp32_time);
#if defined(MINILM_HAVE_OPENBLAS)
    fp32_row("OpenBLAS sgemm", blas_time);
#endif
    std::fflush(stdout);
    // A layer's output error ||XWᵀ - XŴᵀ|| / ||XWᵀ||, measured on the fp32 model's inputs to it on
    // the evaluated sentences (both sides carry the same bias, which the difference cancels and the
    // norm leaves out). `exact` is the float layer; x_exact / x_approx: the inputs each side takes.
    const auto layer_error = [&](const minilm::dense_linear& exact_layer, const minilm::linear& layer,
                                 const std::vector<float>& x_exact, const std::vector<float>& x_approx) {
      const std::size_t m = x_exact.size() / exact_layer.in, n = exact_layer.out;
      std::vector<float> exact(m * n), approx(m * n);
      minilm::fp32_linear(exact_layer).forward({x_exact.data(), m, exact_layer.in}, {exact.data(), m, n}, pool);
      layer.forward({x_approx.data(), m, exact_layer.in}, {approx.data(), m, n}, pool);
      double error = 0, norm = 0;
      for (std::size_t i = 0; i < m * n; ++i) {
        const double y = exact[i] - exact_layer.bias[i % n];
        error += (double(approx[i]) - exact[i]) * (double(approx[i]) - exact[i]);
        norm += y * y;
      }
      return std::sqrt(error / norm);
    };
    const auto report = [&](const recipe& r, const minilm::bert_encoder& model, const std::vector<double>& layer_errors,
                            double quantize_seconds) {
      double mean_error = 0;
      for (double e : layer_errors) mean_error += e / layer_errors.size();
      const double max_error = *std::max_element(layer_errors.begin(), layer_errors.end());
      const std::vector<std::vector<float>> out = model.embed(batch, pool);
      const timings t = time_model(model, batch, repeats, pool);
      double q_worst = 1, q_sum = 0;
      for (std::size_t s = 0; s < reference.size(); ++s) {
        const double c = cosine(out[s], reference[s].embedding);
        q_worst = std::min(q_worst, c);
        q_sum += c;
      }
      const double mib = model.linear_bytes() / double(1 << 20);
      std::printf("| %s | %s | %s | %s | %s | %.2f | %.1f | %.1f | %.6f | %.6f | %.4f / %.4f | %.1f | %.2f | %.2f | %.2f | %.1f |\n",
                  r.format.c_str(), r.group.c_str(), r.algorithm.c_str(), r.sparsity.c_str(), r.activations.c_str(),
                  8.0 * model.linear_bytes() / linear_params, mib, mib + embedding_mib, q_sum / reference.size(), q_worst,
                  mean_error, max_error, t.batch * 1e3, baseline.batch / t.batch, t.sentence * 1e3,
                  baseline.sentence / t.sentence, quantize_seconds);
      std::fflush(stdout);
    };
    for (const recipe& r : recipes()) {
      if ((!only.empty() && r.format != only) || (r.slow && !algorithms) || folded_only) continue;
      std::vector<double> layer_errors;
      double quantize_seconds = 0;
      const minilm::bert_encoder model(weights, [&](const minilm::dense_linear& d) {
        const std::vector<float>& c = calibration_inputs.at(d.name);
        const auto start = std::chrono::steady_clock::now();
        std::unique_ptr<minilm::linear> layer = r.make(d, {c.data(), c.size() / d.in, d.in}, pool);
        quantize_seconds += seconds_since(start);
        const std::vector<float>& x = evaluation_inputs.at(d.name);
        layer_errors.push_back(layer_error(d, *layer, x, x));
        return layer;
      });
      report(r, model, layer_errors, quantize_seconds);
    }

    // AWQ with its scales folded into the model (int4, groups of 64), against the same quantized
    // weights with the scales applied to the activations: the same embeddings to float rounding.
    if ((algorithms || folded_only) && (only.empty() || only == "int4")) {
      using int4_fp16 = lowbit::scheme<lowbit::int4, lowbit::fp16>;
      const awq_folded<int4_fp16> awq(weights, calibration_inputs, 64, pool);
      const auto worst_against = [&](const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
        double w = 1, difference = 0;
        for (std::size_t s = 0; s < a.size(); ++s) {
          w = std::min(w, cosine(a[s], b[s]));
          for (std::size_t i = 0; i < a[s].size(); ++i) difference = std::max(difference, std::fabs(double(a[s][i]) - b[s][i]));
        }
        char line[128];
        std::snprintf(line, sizeof line, "worst cosine 1 - %.1e, largest element difference %.1e", 1.0 - w, difference);
        return std::string(line);
      };
      // The folds on the fp32 model (V / s, W diag(s), the LayerNorms' second outputs, GELU / s).
      const minilm::bert_encoder fp32_folded(
          weights, [&](const minilm::dense_linear& d) { return std::make_unique<minilm::fp32_linear>(awq.effective(d)); }, awq.folds);
      const std::string fp32_check = worst_against(fp32_folded.embed(batch, pool), embeddings);
      // The quantized model: folded, and the same weights with x / s before each linear instead.
      std::vector<double> layer_errors;
      const minilm::bert_encoder folded(weights, [&](const minilm::dense_linear& d) {
        return packed(awq.weights.at(d.name), awq.effective(d));
      }, awq.folds);
      const minilm::bert_encoder divided(weights, [&](const minilm::dense_linear& d) {
        const auto s = awq.scales.find(d.name);
        std::unique_ptr<minilm::linear> layer = packed(awq.weights.at(d.name), awq.effective(d), lowbit::compute::weight_only,
                                                       {s == awq.scales.end() ? std::vector<float>{} : s->second, {}});
        // Its error against the float layer it replaces, on the inputs the folded model gives it.
        std::vector<float> x = evaluation_inputs.at(d.name), x_exact;
        const auto into = awq.into_value.find(d.name);  // the attention output: its input is V's / s
        if (into != awq.into_value.end())
          for (std::size_t i = 0; i < x.size(); ++i) x[i] /= into->second[i % d.in];
        x_exact = x;
        if (s != awq.scales.end())
          for (std::size_t i = 0; i < x.size(); ++i) x_exact[i] /= s->second[i % d.in];
        layer_errors.push_back(layer_error(awq.effective(d), *layer, x_exact, x));
        return layer;
      });
      const std::string quantized_check = worst_against(folded.embed(batch, pool), divided.embed(batch, pool));
      recipe r{"int4", "64", "AWQ folded", "-", "fp32", {}};
      report(r, folded, layer_errors, awq.seconds);
      r.algorithm = "AWQ folded: x / s at each linear instead";
      report(r, divided, layer_errors, awq.seconds);
      std::printf("\nAWQ's scales folded (V's rows for the attention output, LayerNorms' second outputs for Q/K/V and the "
                  "FFN's first linear, GELU for its second):\n  on the fp32 model, against the fp32 model: %s\n  quantized "
                  "(int4 g64), against the same weights with x / s at each linear: %s\n",
                  fp32_check.c_str(), quantized_check.c_str());
    }
    return pass ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minilm: %s\n", e.what());
    return 2;
  }
}
