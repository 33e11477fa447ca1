/// \file
/// \brief A key/value cache for a batch of sequences, stored in low bits: each token's key and
/// value vector per KV head is one row of a quantized matrix (any lowbit scheme, scales in groups
/// along the head dimension), or plain fp32 / bf16 (the baselines).
///
///   lowbit::attention::kv_cache<lowbit::scheme<lowbit::int8>> cache({batch, kv_heads, head_dim, capacity});
///   cache.append(seq, k, v, tokens);     // k, v: tokens x kv_heads x head_dim floats
///   lowbit::attention::decode(q, cache, out, q_heads);
///
/// Layout: row (seq, head, token) of the K (and V) matrix is (seq * kv_heads + head) * capacity
/// + token, so one head's tokens are consecutive rows that a kernel streams. Paged (page_tokens
/// > 0, as serving engines keep it): a pool of `pages` pages of page_tokens tokens, and per
/// sequence a block table of pages that the engine's own allocator chooses (map_pages); token t
/// of a sequence is row (table[t / page_tokens] * kv_heads + head) * page_tokens + t % page_tokens.
/// Element is float, bf16 or a scheme; group_size counts elements of a head vector (0: one scale
/// per token-head).
///
/// integer_tiles (int8 / int4 without zero points, per-token keys): the cache also keeps each
/// head's codes and scales in 16-token tiles laid out for the AVX-512 integer decode kernel
/// (int_tiles.hpp), written at append time; that doubles the memory of the codes.
///
/// The public accessors (length, capacity, row, tile, key, key_residual) check their sequence,
/// head, token and element numbers and raise lowbit::error; the kernels, whose indices come from
/// the cache itself, read through detail::kv_unchecked and pay for no check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../core/aligned.hpp"
#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../kernels/reference/dequantize.hpp"
#include "../layout/quantized_matrix.hpp"
#include "../quant/quantize.hpp"
#include "int_tiles.hpp"

namespace lowbit {
namespace attention {

namespace detail {
struct kv_unchecked;
}  // namespace detail

struct kv_shape {
  std::size_t batch = 0;     ///< sequences
  std::size_t kv_heads = 0;
  std::size_t head_dim = 0;  ///< a multiple of 16
  std::size_t capacity = 0;  ///< tokens each sequence can hold (contiguous layout)
  std::size_t page_tokens = 0;  ///< paged layout: tokens per page, a multiple of 16 (0: contiguous)
  std::size_t pages = 0;        ///< paged layout: pages in the pool
  /// Also keep the codes in the integer decode kernel's tiles (int8 / int4 without zero points,
  /// per-token keys; decode_options::integer_pv then streams them on AVX-512): twice the memory.
  bool integer_tiles = false;
};

/// Storage of one of K or V: a quantized matrix, or a plain buffer of Element.
template <class Element, class = void>
struct kv_rows {
  using scheme_type = Element;
  quantized_matrix<Element> matrix;
  kv_rows(std::size_t rows, std::size_t cols, std::size_t group_size) : matrix(rows, cols, group_size) {}
  /// Quantizes `count` rows of `cols` floats (src, row stride ld) into rows [first, first + count).
  void store(std::size_t first, const float* src, std::size_t count, std::size_t ld) {
    const quantized_matrix<Element> q = quantize<Element>(src, count, matrix.cols(), ld, {matrix.group_size()});
    const std::size_t groups = matrix.groups_per_row();
    std::memcpy(matrix.codes() + first * matrix.row_bytes(), q.codes(), count * matrix.row_bytes());
    std::memcpy(matrix.scales() + first * groups, q.scales(), count * groups * sizeof(typename Element::scale_type));
    if (Element::has_zero) std::memcpy(matrix.zeros() + first * groups, q.zeros(), count * groups);
  }
  /// Element i of row `row`, dequantized; a row or element past the matrix is a lowbit::error.
  float element(std::size_t row, std::size_t i) const {
    LOWBIT_CHECK(row < matrix.rows() && i < matrix.cols(), "kv_rows::element: element (" << row << ", " << i << ") of a "
                                                                                    << matrix.rows() << " x " << matrix.cols()
                                                                                    << " matrix");
    return reference::dequantize_element(matrix.view(), row, i);
  }
  /// The codes of rows [row, row + n): what a kernel streams (prefetch target). Unchecked (a kernel
  /// entry point): row <= rows.
  const void* codes_of(std::size_t row) const noexcept { return matrix.codes() + row * matrix.row_bytes(); }
  std::size_t code_bytes(std::size_t n) const noexcept { return n * matrix.row_bytes(); }
  std::size_t bytes_per_row() const noexcept {
    return matrix.row_bytes() + matrix.groups_per_row() * (sizeof(typename Element::scale_type) + (Element::has_zero ? 1 : 0));
  }
};

template <class Element>
struct kv_rows<Element, std::enable_if_t<std::is_same<Element, float>::value || std::is_same<Element, bf16>::value>> {
  aligned_buffer<Element> data;
  std::size_t cols;
  kv_rows(std::size_t rows, std::size_t cols_, std::size_t) : data(rows * cols_), cols(cols_) {}
  void store(std::size_t first, const float* src, std::size_t count, std::size_t ld) {
    for (std::size_t r = 0; r < count; ++r)
      for (std::size_t i = 0; i < cols; ++i) data[(first + r) * cols + i] = Element(src[r * ld + i]);
  }
  float element(std::size_t row, std::size_t i) const {
    const std::size_t rows = data.size() / cols;
    LOWBIT_CHECK(row < rows && i < cols,
                 "kv_rows::element: element (" << row << ", " << i << ") of a " << rows << " x " << cols << " matrix");
    return static_cast<float>(data[row * cols + i]);
  }
  const void* codes_of(std::size_t row) const noexcept { return data.data() + row * cols; }
  std::size_t code_bytes(std::size_t n) const noexcept { return n * cols * sizeof(Element); }
  std::size_t bytes_per_row() const noexcept { return cols * sizeof(Element); }
};

/// KIVI keys (key_tokens > 0): per block of key_tokens tokens of one head, its d channels are
/// rows of a quantized matrix over the block's tokens (one group a row: a scale, and a zero point
/// when the scheme has them, per channel). Nothing for float / bf16 caches.
template <class Element, class = void>
struct kivi_rows {
  kivi_rows(std::size_t, std::size_t) {}
  float element(std::size_t, std::size_t) const noexcept { return 0.0f; }
  std::size_t bytes_per_token(std::size_t) const noexcept { return 0; }
};
template <class Element>
struct kivi_rows<Element, std::enable_if_t<is_scheme<Element>::value>> {
  quantized_matrix<Element> matrix;
  kivi_rows(std::size_t rows, std::size_t tokens) : matrix(rows ? rows : 1, tokens ? tokens : 1, tokens ? tokens : 1) {}
  float element(std::size_t row, std::size_t col) const {
    LOWBIT_CHECK(row < matrix.rows() && col < matrix.cols(), "kivi_rows::element: element (" << row << ", " << col << ") of a "
                                                                                       << matrix.rows() << " x "
                                                                                       << matrix.cols() << " matrix");
    return reference::dequantize_element(matrix.view(), row, col);
  }
  /// Codes, and the scales and zero points of d channels spread over the block's tokens.
  std::size_t bytes_per_token(std::size_t d) const noexcept {
    const std::size_t tokens = matrix.cols();
    return packed_bytes(d * tokens, Element::bits) / tokens +
           (d * (sizeof(typename Element::scale_type) + (Element::has_zero ? 1 : 0)) + tokens - 1) / tokens;
  }
};

template <class Element>
class kv_cache {
 public:
  using element_type = Element;

  /// group_size: elements of a head vector per scale (0: the whole vector); ignored for float/bf16.
  /// key_tokens > 0: KIVI keys, quantized per channel over blocks of key_tokens tokens (a
  /// multiple of 16 dividing the capacity or page_tokens; quantized schemes only). Each head's
  /// newest incomplete block stays in fp32 (the residual) and is quantized when it fills, so
  /// appending token by token works; values stay per token with group_size.
  explicit kv_cache(const kv_shape& shape, std::size_t group_size = 0, std::size_t key_tokens = 0)
      : shape_(checked(shape, key_tokens)),
        key_tokens_(key_tokens),
        keys_(key_tokens ? 1 : rows(), shape.head_dim, group_size ? group_size : shape.head_dim),
        values_(rows(), shape.head_dim, group_size ? group_size : shape.head_dim),
        lengths_(shape.batch, 0),
        tables_(shape.page_tokens ? shape.batch : 0),
        kivi_(key_tokens ? rows() / key_tokens * shape.head_dim : 0, key_tokens),
        residual_(key_tokens ? shape.batch * shape.kv_heads * key_tokens * shape.head_dim : 0),
        tile_layout_(tile_layout_of(shape, group_size ? group_size : shape.head_dim, key_tokens)),
        tiles_(shape.integer_tiles ? tile_count() * tile_layout_.bytes : 0) {}

  const kv_shape& shape() const noexcept { return shape_; }
  /// Tokens sequence seq holds (seq < batch, else a lowbit::error, as for every accessor below).
  std::size_t length(std::size_t seq) const {
    check_sequence(seq, "length");
    return lengths_[seq];
  }
  const std::vector<std::size_t>& lengths() const noexcept { return lengths_; }
  bool paged() const noexcept { return shape_.page_tokens != 0; }
  /// Tokens sequence seq can hold: the capacity, or its mapped pages' tokens.
  std::size_t capacity(std::size_t seq) const {
    check_sequence(seq, "capacity");
    return capacity_at(seq);
  }
  /// Row of token t of head h of sequence seq in the K and V storage (t < capacity(seq): the
  /// rows exist, written or not).
  std::size_t row(std::size_t seq, std::size_t h, std::size_t t) const {
    check_slot(seq, h, t, "row");
    return row_at(seq, h, t);
  }
  /// integer_tiles: the layout of a tile, and the tile that holds token t of head h of sequence
  /// seq (t < capacity(seq)); a cache without tiles is a lowbit::error.
  bool has_tiles() const noexcept { return !tiles_.empty(); }
  const int_tile_layout& tile_layout() const noexcept { return tile_layout_; }
  const uint8_t* tile(std::size_t seq, std::size_t h, std::size_t t) const {
    LOWBIT_CHECK(has_tiles(), "kv_cache::tile: the cache keeps no integer tiles (kv_shape::integer_tiles is false)");
    check_slot(seq, h, t, "tile");
    return tile_at(seq, h, t);
  }
  /// Tokens from t on whose rows are consecutive (to the end of t's page).
  std::size_t run(std::size_t t) const noexcept {
    return paged() ? shape_.page_tokens - t % shape_.page_tokens : ~std::size_t(0);
  }

  /// Paged layout: sequence seq's block table, pages[0 .. count) of the pool in token order (the
  /// engine allocates them; sequences may share read-only prefix pages). It must still cover the
  /// tokens the sequence holds. A page past the pool is a lowbit::error.
  void map_pages(std::size_t seq, const uint32_t* pages, std::size_t count) {
    LOWBIT_CHECK(paged(), "kv_cache: map_pages needs the paged layout (page_tokens > 0)");
    LOWBIT_CHECK(seq < shape_.batch, "kv_cache: sequence " << seq << " of a batch of " << shape_.batch);
    LOWBIT_CHECK(count == 0 || pages != nullptr, "kv_cache: pages is null");
    for (std::size_t i = 0; i < count; ++i)
      LOWBIT_CHECK(pages[i] < shape_.pages, "kv_cache: page " << pages[i] << " (entry " << i << " of sequence " << seq
                                                              << ") is past the pool of " << shape_.pages);
    LOWBIT_CHECK(count * shape_.page_tokens >= lengths_[seq],
                 "kv_cache: " << count << " pages cannot hold sequence " << seq << "'s " << lengths_[seq] << " tokens");
    tables_[seq].assign(pages, pages + count);
  }
  /// Per-token keys (not used when key_tokens() > 0: see key(), key_blocks(), key_residual()).
  const kv_rows<Element>& keys() const noexcept { return keys_; }
  /// KIVI: tokens per key block (0: keys quantized per token like values).
  std::size_t key_tokens() const noexcept { return key_tokens_; }
  /// Element e of token t's key in head h of sequence seq, as the kernels see it (dequantized);
  /// t < length(seq), e < head_dim.
  float key(std::size_t seq, std::size_t h, std::size_t t, std::size_t e) const {
    check_token(seq, h, t, "key");
    LOWBIT_CHECK(e < shape_.head_dim, "kv_cache::key: element " << e << " of a head_dim of " << shape_.head_dim);
    if (!key_tokens_) return keys_.element(row_at(seq, h, t), e);
    const std::size_t T = key_tokens_, d = shape_.head_dim;
    if (t >= lengths_[seq] / T * T) return key_residual_at(seq, h, t)[e];
    const std::size_t r = row_at(seq, h, t);
    return kivi_.element(r / T * d + e, r % T);
  }
  /// KIVI: the blocks (for schemes, .matrix: row r / key_tokens() * head_dim + e holds channel e
  /// of the block of cache row r, over its key_tokens() tokens), and the fp32 key of token t of
  /// the newest, incomplete block (t >= length(seq) / key_tokens() * key_tokens()).
  const kivi_rows<Element>& key_blocks() const noexcept { return kivi_; }
  const float* key_residual(std::size_t seq, std::size_t h, std::size_t t) const {
    LOWBIT_CHECK(key_tokens_ > 0, "kv_cache::key_residual: the cache has no KIVI keys (key_tokens = 0)");
    check_token(seq, h, t, "key_residual");
    LOWBIT_CHECK(t >= lengths_[seq] / key_tokens_ * key_tokens_,
                 "kv_cache::key_residual: token " << t << " of sequence " << seq << " is in a complete block of "
                                                  << key_tokens_ << " (the residual holds tokens from "
                                                  << lengths_[seq] / key_tokens_ * key_tokens_ << ")");
    return key_residual_at(seq, h, t);
  }
  const kv_rows<Element>& values() const noexcept { return values_; }
  /// Bytes of K and V for one token of one head (codes, scales, zero points).
  std::size_t bytes_per_token_head() const noexcept {
    return (key_tokens_ ? kivi_.bytes_per_token(shape_.head_dim) : keys_.bytes_per_row()) + values_.bytes_per_row();
  }

  /// Appends `tokens` tokens to sequence seq: k and v hold tokens x kv_heads x head_dim floats
  /// (row-major). Overflowing the capacity, a bad sequence index or null data is a lowbit::error.
  void append(std::size_t seq, const float* k, const float* v, std::size_t tokens) {
    LOWBIT_CHECK(seq < shape_.batch, "kv_cache: sequence " << seq << " of a batch of " << shape_.batch);
    LOWBIT_CHECK(k != nullptr && v != nullptr, "kv_cache: k or v is null");
    LOWBIT_CHECK(tokens <= capacity_at(seq) - lengths_[seq],
                 "kv_cache: sequence " << seq << " holds " << lengths_[seq] << " tokens; " << tokens
                                       << " more overflow its " << (paged() ? "mapped pages' " : "") << "capacity of "
                                       << capacity_at(seq));
    const std::size_t stride = shape_.kv_heads * shape_.head_dim;
    for (std::size_t done = 0; done < tokens;) {  // run by run (a page at a time when paged)
      const std::size_t t = lengths_[seq] + done, n = std::min(tokens - done, run(t));
      for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
        if (!key_tokens_) keys_.store(row_at(seq, h, t), k + done * stride + h * shape_.head_dim, n, stride);
        values_.store(row_at(seq, h, t), v + done * stride + h * shape_.head_dim, n, stride);
        if (has_tiles()) store_tiles(seq, h, t, n);
      }
      done += n;
    }
    if (key_tokens_) append_kivi(seq, k, tokens);
    lengths_[seq] += tokens;
  }
  /// Forgets sequence seq's tokens (its slot is reused by the next append).
  void clear(std::size_t seq) {
    LOWBIT_CHECK(seq < shape_.batch, "kv_cache: sequence " << seq << " of a batch of " << shape_.batch);
    lengths_[seq] = 0;
  }

 private:
  friend struct detail::kv_unchecked;

  /// The unchecked accessors (the kernels' through detail::kv_unchecked, and append's).
  std::size_t capacity_at(std::size_t seq) const noexcept {
    return paged() ? tables_[seq].size() * shape_.page_tokens : shape_.capacity;
  }
  std::size_t row_at(std::size_t seq, std::size_t h, std::size_t t) const noexcept {
    if (!paged()) return (seq * shape_.kv_heads + h) * shape_.capacity + t;
    const std::size_t p = shape_.page_tokens;
    return (tables_[seq][t / p] * shape_.kv_heads + h) * p + t % p;
  }
  const uint8_t* tile_at(std::size_t seq, std::size_t h, std::size_t t) const noexcept {
    return tiles_.data() + tile_index(seq, h, t) * tile_layout_.bytes;
  }
  const float* key_residual_at(std::size_t seq, std::size_t h, std::size_t t) const noexcept {
    const std::size_t T = key_tokens_;
    return residual_.data() + ((seq * shape_.kv_heads + h) * T + t % T) * shape_.head_dim;
  }

  /// The accessors' checks: sequence < batch, head < kv_heads, and token t below the capacity
  /// (a row or tile that exists) or the length (a key that was appended).
  void check_sequence(std::size_t seq, const char* accessor) const {
    LOWBIT_CHECK(seq < shape_.batch, "kv_cache::" << accessor << ": sequence " << seq << " of a batch of " << shape_.batch);
  }
  void check_head(std::size_t h, const char* accessor) const {
    LOWBIT_CHECK(h < shape_.kv_heads, "kv_cache::" << accessor << ": head " << h << " of " << shape_.kv_heads << " KV heads");
  }
  void check_slot(std::size_t seq, std::size_t h, std::size_t t, const char* accessor) const {
    check_sequence(seq, accessor);
    check_head(h, accessor);
    LOWBIT_CHECK(t < capacity_at(seq), "kv_cache::" << accessor << ": token " << t << " past sequence " << seq << "'s "
                                                    << (paged() ? "mapped pages' " : "") << "capacity of "
                                                    << capacity_at(seq));
  }
  void check_token(std::size_t seq, std::size_t h, std::size_t t, const char* accessor) const {
    check_sequence(seq, accessor);
    check_head(h, accessor);
    LOWBIT_CHECK(t < lengths_[seq], "kv_cache::" << accessor << ": token " << t << " of sequence " << seq << ", which holds "
                                                 << lengths_[seq] << " tokens");
  }

  /// integer_tiles: tokens [t, t + n) of head h (stored in the rows already) into their tiles.
  void store_tiles(std::size_t seq, std::size_t h, std::size_t t, std::size_t n) {
    if constexpr (is_int_kv<Element>::value) {
      const auto& K = keys_.matrix;
      const auto& V = values_.matrix;
      const std::size_t G = K.groups_per_row();
      for (std::size_t i = t; i < t + n; ++i) {
        const std::size_t r = row_at(seq, h, i);
        tile_layout_.store(tiles_.data() + tile_index(seq, h, i) * tile_layout_.bytes, i % 16, K.codes() + r * K.row_bytes(),
                           V.codes() + r * V.row_bytes(), K.scales() + r * G, V.scales() + r * G);
      }
    } else {
      (void)seq, (void)h, (void)t, (void)n;
    }
  }
  std::size_t tile_index(std::size_t seq, std::size_t h, std::size_t t) const noexcept {
    if (!paged()) return (seq * shape_.kv_heads + h) * ((shape_.capacity + 15) / 16) + t / 16;
    const std::size_t p = shape_.page_tokens;
    return (tables_[seq][t / p] * shape_.kv_heads + h) * (p / 16) + t % p / 16;
  }
  std::size_t tile_count() const noexcept {
    return shape_.page_tokens ? shape_.pages * shape_.kv_heads * (shape_.page_tokens / 16)
                              : shape_.batch * shape_.kv_heads * ((shape_.capacity + 15) / 16);
  }
  static int_tile_layout tile_layout_of(const kv_shape& s, std::size_t group_size, std::size_t key_tokens) {
    if (!s.integer_tiles) return {};
    LOWBIT_CHECK(is_int_kv<Element>::value,
                 "kv_cache: integer_tiles needs int8 or int4 codes without zero points (scheme<int8 or int4, ...>)");
    LOWBIT_CHECK(key_tokens == 0, "kv_cache: integer_tiles needs per-token keys, not KIVI keys (key_tokens > 0)");
    if constexpr (is_int_kv<Element>::value) {
      constexpr bool int4_codes = std::is_same<typename Element::format, int4>::value;
      LOWBIT_CHECK(group_size == s.head_dim || group_size % (int4_codes ? 32 : 16) == 0,
                   "kv_cache: integer_tiles needs one scale per token and head or groups of a multiple of "
                       << (int4_codes ? 32 : 16) << " elements, not " << group_size);
      return int_tile_layout(int4_codes, s.head_dim, s.head_dim / group_size, sizeof(typename Element::scale_type));
    }
    return {};
  }

  /// KIVI: tokens into the residual; each block that fills is quantized per channel.
  void append_kivi(std::size_t seq, const float* k, std::size_t tokens) {
    if constexpr (is_scheme<Element>::value) {
      const std::size_t T = key_tokens_, d = shape_.head_dim, heads = shape_.kv_heads;
      std::vector<float> block(d * T);
      for (std::size_t i = 0; i < tokens; ++i) {
        const std::size_t t = lengths_[seq] + i, slot = t % T;
        for (std::size_t h = 0; h < heads; ++h) {
          float* residual = residual_.data() + (seq * heads + h) * T * d;
          std::copy(k + (i * heads + h) * d, k + (i * heads + h + 1) * d, residual + slot * d);
          if (slot + 1 < T) continue;
          for (std::size_t j = 0; j < T; ++j)  // channels as rows over the block's tokens
            for (std::size_t e = 0; e < d; ++e) block[e * T + j] = residual[j * d + e];
          const quantized_matrix<Element> q = quantize<Element>(block.data(), d, T, T, {T});
          auto& m = kivi_.matrix;
          const std::size_t first = row_at(seq, h, t + 1 - T) / T * d;
          std::memcpy(m.codes() + first * m.row_bytes(), q.codes(), d * m.row_bytes());
          std::memcpy(m.scales() + first, q.scales(), d * sizeof(typename Element::scale_type));
          if (Element::has_zero) std::memcpy(m.zeros() + first, q.zeros(), d);
        }
      }
    } else {
      (void)seq, (void)k, (void)tokens;
    }
  }

  static const kv_shape& checked(const kv_shape& s, std::size_t key_tokens) {
    if (key_tokens) {
      LOWBIT_CHECK(is_scheme<Element>::value, "kv_cache: KIVI keys (key_tokens > 0) need a quantized scheme, not fp32/bf16");
      LOWBIT_CHECK(key_tokens % 16 == 0 && key_tokens <= 1024,
                   "kv_cache: key_tokens=" << key_tokens << " must be a multiple of 16, at most 1024");
      LOWBIT_CHECK(s.page_tokens ? s.page_tokens % key_tokens == 0 : s.capacity % key_tokens == 0,
                   "kv_cache: key_tokens=" << key_tokens << " must divide " << (s.page_tokens ? "page_tokens=" : "capacity=")
                                           << (s.page_tokens ? s.page_tokens : s.capacity));
    }
    LOWBIT_CHECK(s.batch > 0 && s.kv_heads > 0, "kv_cache: batch and kv_heads must be positive");
    LOWBIT_CHECK(s.head_dim > 0 && s.head_dim % 16 == 0, "kv_cache: head_dim=" << s.head_dim << " must be a positive multiple of 16");
    if (s.page_tokens) {
      LOWBIT_CHECK(s.page_tokens % 16 == 0 && s.pages > 0,
                   "kv_cache: page_tokens=" << s.page_tokens << " must be a multiple of 16 and pages=" << s.pages
                                            << " positive");
      LOWBIT_CHECK(s.pages * s.kv_heads <= (std::size_t(1) << 40) / s.page_tokens, "kv_cache: too large");
    } else {
      LOWBIT_CHECK(s.capacity > 0, "kv_cache: capacity must be positive");
      LOWBIT_CHECK(s.batch * s.kv_heads <= (std::size_t(1) << 40) / s.capacity, "kv_cache: too large");
    }
    return s;
  }
  std::size_t rows() const noexcept {
    return shape_.page_tokens ? shape_.pages * shape_.kv_heads * shape_.page_tokens
                              : shape_.batch * shape_.kv_heads * shape_.capacity;
  }

  kv_shape shape_;
  std::size_t key_tokens_;
  kv_rows<Element> keys_, values_;
  std::vector<std::size_t> lengths_;
  std::vector<std::vector<uint32_t>> tables_;  ///< paged: each sequence's pages
  kivi_rows<Element> kivi_;
  std::vector<float> residual_;  ///< KIVI: batch x kv_heads x key_tokens x head_dim
  int_tile_layout tile_layout_;
  aligned_buffer<uint8_t> tiles_;  ///< integer_tiles: tile_count() tiles of tile_layout_.bytes
};

namespace detail {
/// The kernels' access to a kv_cache without the public accessors' checks: decode and prefill
/// validate their arguments once and take every sequence, head and token from the cache itself.
struct kv_unchecked {
  template <class Element>
  static std::size_t length(const kv_cache<Element>& c, std::size_t seq) noexcept {
    return c.lengths_[seq];
  }
  template <class Element>
  static std::size_t row(const kv_cache<Element>& c, std::size_t seq, std::size_t h, std::size_t t) noexcept {
    return c.row_at(seq, h, t);
  }
  template <class Element>
  static const uint8_t* tile(const kv_cache<Element>& c, std::size_t seq, std::size_t h, std::size_t t) noexcept {
    return c.tile_at(seq, h, t);
  }
  template <class Element>
  static const float* key_residual(const kv_cache<Element>& c, std::size_t seq, std::size_t h, std::size_t t) noexcept {
    return c.key_residual_at(seq, h, t);
  }
};
}  // namespace detail

}  // namespace attention
}  // namespace lowbit
