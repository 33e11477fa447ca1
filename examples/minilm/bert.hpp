// A BERT encoder forward pass (all-MiniLM-L6-v2's shape: 6 layers, hidden 384, 12 heads of 32,
// FFN 1536) for a batch of sentences of different lengths, on lowbit's kernels: every linear layer
// is a `linear` (lowbit::gemm on a quantized matrix, or the fp32 baseline), attention is
// lowbit::attention::prefill with a bidirectional mask over a kv_cache that holds the layer's K and
// V. The tokens of all sentences are the rows of one matrix, sentence after sentence: no padding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <lowbit/attention/kv_cache.hpp>
#include <lowbit/attention/prefill.hpp>
#include <lowbit/core/parallel.hpp>
#include <lowbit/core/views.hpp>
#include <lowbit/interop/safetensors.hpp>
#include <lowbit/kernels/gemm.hpp>
#include <lowbit/kernels/gemm_sparse24.hpp>

namespace minilm {

/// A linear layer as the checkpoint holds it: W is out x in, row-major (PyTorch's nn.Linear).
struct dense_linear {
  std::string name;
  std::size_t out = 0, in = 0;
  std::vector<float> weight, bias;
};

/// A linear layer ready to run: y (M x out) = x (M x in) · Wᵀ + b.
class linear {
 public:
  virtual ~linear() = default;
  virtual void forward(lowbit::matrix_view<const float> x, lowbit::matrix_view<float> y, lowbit::thread_pool& pool) const = 0;
  /// Bytes the weights take (codes, scales, zero points; not the fp32 bias).
  virtual std::size_t weight_bytes() const = 0;
};

/// The fp32 baseline. lowbit has no fp32 weight format (its kernels are for low-bit weights), so
/// this is plain C++: W kept transposed (in x out) so the inner loop runs along contiguous outputs
/// and the compiler vectorizes it; blocks of y over the pool.
class fp32_linear final : public linear {
 public:
  explicit fp32_linear(const dense_linear& w) : out_(w.out), in_(w.in), wt_(w.in * w.out), bias_(w.bias) {
    for (std::size_t n = 0; n < out_; ++n)
      for (std::size_t k = 0; k < in_; ++k) wt_[k * out_ + n] = w.weight[n * in_ + k];
  }
  void forward(lowbit::matrix_view<const float> x, lowbit::matrix_view<float> y, lowbit::thread_pool& pool) const override {
    // Blocks of 4 rows x 64 outputs accumulate over all of K in a local array the compiler keeps
    // in vector registers (16 AVX-512 registers); out is a multiple of 64 in this model.
    constexpr std::size_t rows = 4, cols = 64;
    const std::size_t m = x.rows, row_blocks = (m + rows - 1) / rows, col_blocks = out_ / cols;
    if (out_ % cols) throw std::runtime_error("fp32_linear: outputs must be a multiple of 64");
    pool(row_blocks * col_blocks, [&](std::size_t begin, std::size_t end) {
      for (std::size_t b = begin; b < end; ++b) {
        const std::size_t i0 = b / col_blocks * rows, n0 = b % col_blocks * cols;
        const float* xr[rows];
        for (std::size_t i = 0; i < rows; ++i) xr[i] = x.data + std::min(i0 + i, m - 1) * x.ld;  // tail: repeat the last row
        float acc[rows][cols];
        for (std::size_t i = 0; i < rows; ++i)
          for (std::size_t n = 0; n < cols; ++n) acc[i][n] = bias_[n0 + n];
        for (std::size_t k = 0; k < in_; ++k) {
          const float* w = wt_.data() + k * out_ + n0;
          for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t n = 0; n < cols; ++n) acc[i][n] += xr[i][k] * w[n];
        }
        for (std::size_t i = 0; i < rows && i0 + i < m; ++i)
          std::copy(acc[i], acc[i] + cols, y.data + (i0 + i) * y.ld + n0);
      }
    });
  }
  std::size_t weight_bytes() const override { return wt_.size() * sizeof(float); }

 private:
  std::size_t out_, in_;
  std::vector<float> wt_, bias_;
};

/// What a layer does to x before its GEMM, for algorithms that change the input side: divide each
/// column by a per-channel scale (AWQ's s; an engine folds 1/s into the LayerNorm or linear
/// before), and gather the columns in the order the matrix stores them (GPTQ's activation order).
struct input_transform {
  std::vector<float> divisors;   ///< empty: none
  std::vector<uint32_t> order;   ///< empty: natural order; else column j of the result is x[:, order[j]]

  bool empty() const noexcept { return divisors.empty() && order.empty(); }
  std::size_t bytes() const noexcept { return divisors.size() * sizeof(float) + order.size() * sizeof(uint32_t); }
  void apply(lowbit::matrix_view<const float> x, std::vector<float>& out) const {
    const std::size_t k = x.cols;
    out.resize(x.rows * k);
    for (std::size_t i = 0; i < x.rows; ++i)
      for (std::size_t j = 0; j < k; ++j) {
        const std::size_t c = order.empty() ? j : order[j];
        out[i * k + j] = divisors.empty() ? x.data[i * x.ld + c] : x.data[i * x.ld + c] / divisors[c];
      }
  }
};

/// A linear layer on lowbit: W quantized once (a panel_matrix, packed for the GEMM, or a
/// sparse24_matrix), every call is lowbit::gemm: weight-only, or with int8 activations (W8A8 /
/// W4A8, optionally with SmoothQuant's per-channel divisors).
template <class Matrix>
class lowbit_linear final : public linear {
 public:
  lowbit_linear(Matrix w, std::vector<float> bias, lowbit::compute mode, input_transform input = {},
                std::vector<float> smoothing = {})
      : w_(std::move(w)), bias_(std::move(bias)), mode_(mode), input_(std::move(input)), smoothing_(std::move(smoothing)) {}
  void forward(lowbit::matrix_view<const float> x, lowbit::matrix_view<float> y, lowbit::thread_pool& pool) const override {
    const lowbit::gemm_options options{bias_.data(), mode_, smoothing_.empty() ? nullptr : smoothing_.data()};
    if (input_.empty()) {
      lowbit::gemm(x, w_, y, options, pool);
      return;
    }
    input_.apply(x, scratch_);
    lowbit::gemm(lowbit::matrix_view<const float>(scratch_.data(), x.rows, x.cols), w_, y, options, pool);
  }
  std::size_t weight_bytes() const override {
    return w_.storage_bytes() + input_.bytes() + smoothing_.size() * sizeof(float);
  }

 private:
  Matrix w_;
  std::vector<float> bias_;
  lowbit::compute mode_;
  input_transform input_;
  std::vector<float> smoothing_;
  mutable std::vector<float> scratch_;  // the transformed input (forward calls come one at a time)
};

struct layer_norm {
  std::vector<float> gamma, beta;
};

/// The checkpoint's float weights (names as in the Hugging Face BertModel safetensors).
struct bert_weights {
  static constexpr std::size_t hidden = 384, heads = 12, head_dim = 32, ffn = 1536, layers = 6;
  std::vector<float> word_embeddings, position_embeddings, token_type_embeddings;
  std::size_t vocab = 0, max_positions = 0;
  layer_norm embeddings_norm;
  struct layer {
    dense_linear query, key, value, attention_output, intermediate, output;
    layer_norm attention_norm, output_norm;
  };
  std::vector<layer> encoder;

  static bert_weights load(const std::string& safetensors_path) {
    const lowbit::interop::safetensors_file file = lowbit::interop::safetensors_file::open(safetensors_path);
    const auto tensor = [&](const std::string& name, std::vector<std::size_t> shape) {
      const lowbit::interop::st_tensor& t = file.at(name);
      if (t.shape != shape) throw std::runtime_error("unexpected shape of " + name);
      return t.copy_to<float>();
    };
    const auto norm = [&](const std::string& prefix) {
      return layer_norm{tensor(prefix + ".weight", {hidden}), tensor(prefix + ".bias", {hidden})};
    };
    const auto dense = [&](const std::string& prefix, std::size_t out, std::size_t in) {
      return dense_linear{prefix, out, in, tensor(prefix + ".weight", {out, in}), tensor(prefix + ".bias", {out})};
    };
    bert_weights w;
    const lowbit::interop::st_tensor& words = file.at("embeddings.word_embeddings.weight");
    const lowbit::interop::st_tensor& positions = file.at("embeddings.position_embeddings.weight");
    if (words.shape.size() != 2 || positions.shape.size() != 2) throw std::runtime_error("embeddings are not 2-D");
    w.vocab = words.shape[0];
    w.max_positions = positions.shape[0];
    w.word_embeddings = tensor("embeddings.word_embeddings.weight", {w.vocab, hidden});
    w.position_embeddings = tensor("embeddings.position_embeddings.weight", {w.max_positions, hidden});
    w.token_type_embeddings = tensor("embeddings.token_type_embeddings.weight", {2, hidden});
    w.embeddings_norm = norm("embeddings.LayerNorm");
    for (std::size_t l = 0; l < layers; ++l) {
      const std::string p = "encoder.layer." + std::to_string(l);
      w.encoder.push_back({dense(p + ".attention.self.query", hidden, hidden), dense(p + ".attention.self.key", hidden, hidden),
                           dense(p + ".attention.self.value", hidden, hidden),
                           dense(p + ".attention.output.dense", hidden, hidden), dense(p + ".intermediate.dense", ffn, hidden),
                           dense(p + ".output.dense", hidden, ffn), norm(p + ".attention.output.LayerNorm"),
                           norm(p + ".output.LayerNorm")});
    }
    return w;
  }

  /// Every linear layer, in forward order (what a quantization recipe walks over).
  template <class F>
  void for_each_linear(F&& f) const {
    for (const layer& l : encoder)
      for (const dense_linear* d : {&l.query, &l.key, &l.value, &l.attention_output, &l.intermediate, &l.output}) f(*d);
  }
};

/// AWQ's per-input-channel scales s of one encoder layer, folded into the operations that make the
/// linears' inputs, so the linears (quantized W diag(s)) take those inputs as they are. In BERT
/// (post-LN) the inputs of Q/K/V and of the FFN's first linear are LayerNorm outputs that are also
/// the residual of the next LayerNorm, so 1/s cannot go into gamma and beta themselves: that
/// LayerNorm writes a second output with gamma / s and beta / s (one pass, no separate scaling).
/// The FFN's second linear reads GELU's output: 1/s goes into the GELU pass (AWQ's
/// ScaledActivation). The attention output projection needs nothing here: its input is linear in
/// V's output channels, so 1/s goes into V's rows and bias before V is quantized (the recipe does
/// it). Empty vectors: no fold.
struct layer_folds {
  std::vector<float> qkv, ffn_in, ffn_out;
};

/// Sees the input of every linear layer during a forward pass (calibration data for AWQ / GPTQ,
/// per-layer error measurement): called with the layer's name and its input rows.
using linear_observer = std::function<void(const dense_linear&, lowbit::matrix_view<const float>)>;

/// The encoder with its linear layers in one representation: make(dense_linear) builds each.
class bert_encoder {
 public:
  using linear_factory = std::function<std::unique_ptr<linear>(const dense_linear&)>;

  /// folds: empty, or one per layer (see layer_folds).
  bert_encoder(const bert_weights& weights, const linear_factory& make, std::vector<layer_folds> folds = {})
      : w_(weights), folds_(std::move(folds)) {
    for (const auto& l : weights.encoder)
      layers_.push_back({make(l.query), make(l.key), make(l.value), make(l.attention_output), make(l.intermediate),
                         make(l.output)});
    if (!folds_.empty() && folds_.size() != layers_.size()) throw std::runtime_error("bert_encoder: one layer_folds per layer");
    folds_.resize(layers_.size());
    for (std::size_t l = 0; l < layers_.size(); ++l) {  // the LayerNorms' second outputs: gamma / s, beta / s
      const layer_norm& before_qkv = l == 0 ? w_.embeddings_norm : w_.encoder[l - 1].output_norm;
      qkv_norms_.push_back(divided(before_qkv, folds_[l].qkv));
      ffn_in_norms_.push_back(divided(w_.encoder[l].attention_norm, folds_[l].ffn_in));
    }
  }

  /// Bytes of all linear weights.
  std::size_t linear_bytes() const {
    std::size_t total = 0;
    for (const auto& l : layers_)
      for (const auto* p : {&l.query, &l.key, &l.value, &l.attention_output, &l.intermediate, &l.output})
        total += (*p)->weight_bytes();
    return total;
  }

  /// L2-normalized mean-pooled embeddings (hidden floats per sentence) of a batch of token id
  /// sequences.
  std::vector<std::vector<float>> embed(const std::vector<std::vector<int32_t>>& batch, lowbit::thread_pool& pool,
                                        const linear_observer& observe = {}) const {
    constexpr std::size_t H = bert_weights::hidden, F = bert_weights::ffn, heads = bert_weights::heads,
                          D = bert_weights::head_dim;
    std::vector<std::size_t> lengths;
    std::size_t tokens = 0, longest = 0;
    for (const auto& ids : batch) {
      if (ids.empty() || ids.size() > w_.max_positions) throw std::runtime_error("a sequence of bad length");
      lengths.push_back(ids.size());
      tokens += ids.size();
      longest = std::max(longest, ids.size());
    }
    std::vector<float> h(tokens * H), q(tokens * H), k(tokens * H), v(tokens * H), attention(tokens * H),
        projected(tokens * H), up(tokens * F), folded(tokens * H);  // folded: a LayerNorm's second output
    const auto rows = [&](std::vector<float>& data, std::size_t cols) {
      return lowbit::matrix_view<float>(data.data(), tokens, cols);
    };
    const auto run = [&](const linear& layer, const dense_linear& spec, std::vector<float>& x, std::vector<float>& y) {
      const lowbit::matrix_view<const float> xv(x.data(), tokens, spec.in);
      if (observe) observe(spec, xv);
      layer.forward(xv, rows(y, spec.out), pool);
    };

    // Embeddings: word + position + token type 0, then LayerNorm.
    for (std::size_t s = 0, row = 0; s < batch.size(); ++s)
      for (std::size_t t = 0; t < lengths[s]; ++t, ++row) {
        const auto id = static_cast<std::size_t>(batch[s][t]);
        if (id >= w_.vocab) throw std::runtime_error("token id past the vocabulary");
        for (std::size_t i = 0; i < H; ++i)
          h[row * H + i] = w_.word_embeddings[id * H + i] + w_.position_embeddings[t * H + i] + w_.token_type_embeddings[i];
      }
    normalize_rows(h.data(), tokens, w_.embeddings_norm, pool, qkv_norms_[0], folded.data());

    // One cache for every layer: each layer's K and V replace the previous layer's.
    lowbit::attention::kv_cache<float> cache({batch.size(), heads, D, longest});
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const layer_ops& ops = layers_[l];
      const bert_weights::layer& spec = w_.encoder[l];
      const layer_folds& fold = folds_[l];
      std::vector<float>& qkv_input = fold.qkv.empty() ? h : folded;
      run(*ops.query, spec.query, qkv_input, q);
      run(*ops.key, spec.key, qkv_input, k);
      run(*ops.value, spec.value, qkv_input, v);
      // Rows of K and V are tokens x (12 heads x 32): the cache's append layout.
      for (std::size_t s = 0, row = 0; s < batch.size(); row += lengths[s], ++s) {
        cache.clear(s);
        cache.append(s, k.data() + row * H, v.data() + row * H, lengths[s]);
      }
      lowbit::attention::prefill(q.data(), cache, lengths.data(), attention.data(), heads,
                                 lowbit::attention::prefill_mask::bidirectional(), {}, pool);
      run(*ops.attention_output, spec.attention_output, attention, projected);
      add_and_normalize(h.data(), projected.data(), tokens, spec.attention_norm, pool, ffn_in_norms_[l], folded.data());
      run(*ops.intermediate, spec.intermediate, fold.ffn_in.empty() ? h : folded, up);
      pool(tokens, [&](std::size_t begin, std::size_t end) {  // exact (erf) GELU, divided by s when folded
        for (std::size_t t = begin; t < end; ++t)
          for (std::size_t i = 0; i < F; ++i) {
            float& u = up[t * F + i];
            u = 0.5f * u * (1.0f + std::erf(u * 0.70710678118654752f));
            if (!fold.ffn_out.empty()) u /= fold.ffn_out[i];
          }
      });
      run(*ops.output, spec.output, up, projected);
      const bool last = l + 1 == layers_.size();
      add_and_normalize(h.data(), projected.data(), tokens, spec.output_norm, pool, last ? layer_norm{} : qkv_norms_[l + 1],
                        folded.data());
    }

    // Mean pooling over each sentence's tokens, then L2 normalization.
    std::vector<std::vector<float>> out;
    for (std::size_t s = 0, row = 0; s < batch.size(); row += lengths[s], ++s) {
      std::vector<double> sum(H, 0.0);
      for (std::size_t t = 0; t < lengths[s]; ++t)
        for (std::size_t i = 0; i < H; ++i) sum[i] += h[(row + t) * H + i];
      double norm = 0;
      for (double& x : sum) {
        x /= static_cast<double>(lengths[s]);
        norm += x * x;
      }
      norm = std::max(std::sqrt(norm), 1e-12);  // as torch.nn.functional.normalize
      std::vector<float> e(H);
      for (std::size_t i = 0; i < H; ++i) e[i] = static_cast<float>(sum[i] / norm);
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  struct layer_ops {
    std::unique_ptr<linear> query, key, value, attention_output, intermediate, output;
  };

  /// The LayerNorm with gamma / s and beta / s (empty when s is).
  static layer_norm divided(const layer_norm& norm, const std::vector<float>& s) {
    if (s.empty()) return {};
    if (s.size() != norm.gamma.size()) throw std::runtime_error("layer_folds: one scale per hidden channel");
    layer_norm out = norm;
    for (std::size_t i = 0; i < s.size(); ++i) out.gamma[i] /= s[i], out.beta[i] /= s[i];
    return out;
  }

  /// LayerNorm (eps 1e-12, biased variance) of each row of x, in place, rows over the pool; with a
  /// non-empty `second` also the same rows normalized with its gamma and beta into second_out.
  static void normalize_rows(float* x, std::size_t rows, const layer_norm& norm, lowbit::thread_pool& pool,
                             const layer_norm& second = {}, float* second_out = nullptr) {
    constexpr std::size_t H = bert_weights::hidden;
    pool(rows, [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r) {
        float* row = x + r * H;
        double mean = 0, var = 0;
        for (std::size_t i = 0; i < H; ++i) mean += row[i];
        mean /= H;
        for (std::size_t i = 0; i < H; ++i) var += (row[i] - mean) * (row[i] - mean);
        const double inv = 1.0 / std::sqrt(var / H + 1e-12);
        for (std::size_t i = 0; i < H; ++i) {
          const float normalized = static_cast<float>((row[i] - mean) * inv);
          if (!second.gamma.empty()) second_out[r * H + i] = normalized * second.gamma[i] + second.beta[i];
          row[i] = normalized * norm.gamma[i] + norm.beta[i];
        }
      }
    });
  }
  /// x = LayerNorm(x + residual) (and the second output, as normalize_rows).
  static void add_and_normalize(float* x, const float* residual, std::size_t rows, const layer_norm& norm,
                                lowbit::thread_pool& pool, const layer_norm& second = {}, float* second_out = nullptr) {
    for (std::size_t i = 0; i < rows * bert_weights::hidden; ++i) x[i] += residual[i];
    normalize_rows(x, rows, norm, pool, second, second_out);
  }

  const bert_weights& w_;
  std::vector<layer_ops> layers_;
  std::vector<layer_folds> folds_;
  std::vector<layer_norm> qkv_norms_, ffn_in_norms_;  // the LayerNorms' second outputs (empty: none)
};

}  // namespace minilm
