/// \file
/// \brief Weight-only GEMM on the SIMD archs: y = x · Wᵀ (+ bias), x fp32, W in the panel layout.
///
/// Two kernels, both walking W panel by panel (16 output rows) so every batch holds 16 / lanes
/// output columns and x is read by broadcasts (no packing of x):
///  - small M (decode, M <= 4 rows at a time): each chunk is decoded in registers and used at
///    once; products accumulate per group unscaled (two accumulator sets for latency) and are
///    scaled once at the end of the group. Streams W once: memory-bound.
///  - large M: a block of W (`tile_panels` panels x `tile_k` columns) is decoded once into an L2
///    tile of floats, then MR x (block_panels * 16) register blocks of y accumulate over it, for
///    every MR rows of x. Decoding is amortized over M; the inner loop is loads, broadcasts, FMAs.
/// Rows of x past M and panels past the matrix are clamped to the last one (computed and
/// discarded), so tails need no extra instantiations; outputs past N are never written.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "panel_decode.hpp"
#include "sparse24_select.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {

/// Where a kernel writes: y (ld), its width n, and an optional bias of n values.
struct gemm_output {
  float* y;
  std::size_t ld;
  std::size_t n;
  const float* bias;

  /// Sets columns [n_begin, n_end) of rows [0, m) to the bias (or zero), for kernels that add.
  void start(std::size_t m, std::size_t n_begin, std::size_t n_end) const noexcept {
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = n_begin; j < n_end; ++j) y[i * ld + j] = bias ? bias[j] : 0.0f;
  }
};

/// Which columns of x meet the stored columns of W. dense_columns: all of them, in order.
/// x_of(j): x column of stored column j, valid through a run of consecutive columns that ends
/// at run_end(j); x_column(p, i, j): the same for row i of panel p (what the scalar path asks).
struct dense_columns {
  static constexpr bool sparse = false;
  std::size_t x_of(std::size_t j) const noexcept { return j; }
  std::size_t run_end(std::size_t) const noexcept { return ~std::size_t(0); }
  std::size_t x_column(std::size_t, std::size_t, std::size_t j) const noexcept { return j; }
};

/// Block-sparse rows (sparse/bsr_matrix.hpp): a block row's blocks side by side; stored column
/// j is column j % width of block j / width, at x column block_cols[j / width] * width + j % width.
struct block_columns {
  static constexpr bool sparse = false;
  const uint32_t* block_cols;
  std::size_t width;   ///< BC
  std::size_t x_cols;  ///< K
  std::size_t x_of(std::size_t j) const noexcept { return block_cols[j / width] * width + j % width; }
  std::size_t run_end(std::size_t j) const noexcept { return (j / width + 1) * width; }
  std::size_t x_column(std::size_t, std::size_t, std::size_t j) const noexcept { return x_of(j); }
};

/// 2:4 (sparse/sparse24_matrix.hpp): stored column j of a row is kept value j, at x column
/// 4 * (j / 2) + its position; the positions of panel p, chunk c are at at(p, c).
struct sparse24_columns {
  static constexpr bool sparse = true;
  const uint8_t* metadata;
  std::size_t chunks;       ///< chunks per panel
  std::size_t row_bytes;    ///< position bytes per row and chunk (per_lane / 4)
  std::size_t x_cols;       ///< the original K
  const uint8_t* at(std::size_t p, std::size_t c) const noexcept { return metadata + (p * chunks + c) * 16 * row_bytes; }
  /// x column of stored column j of row i of panel p.
  std::size_t x_column(std::size_t p, std::size_t i, std::size_t j) const noexcept {
    const std::size_t per_lane = row_bytes * 4, within = j % per_lane;
    const uint8_t byte = at(p, j / per_lane)[i * row_bytes + within / 4];
    return j / 2 * 4 + ((byte >> (within % 4 * 2)) & 3u);
  }
};

namespace simd {

#if defined(LOWBIT_COMPILED_SSE42)

namespace detail {

/// The small-M kernels prefetch each panel's chunks 1 KB ahead (and 2:4 positions, half the
/// bytes a chunk, 512 bytes ahead). They read P panels at once, streams ~100 KB apart, and the
/// hardware prefetcher alone left the core waiting: with this, 4096x14336 at M = 1 on one core ran
/// 7-10% faster (NF4 2.11 -> 1.95 ms, int4 on the bf16 pair kernel 1.55 -> 1.43 ms; 2:4 int4 3%);
/// 512 to 2048 bytes did the same. Prefetches past the end of a buffer do not fault (the address
/// is made as an integer: pointer arithmetic past the end would be undefined).
LOWBIT_ALWAYS_INLINE void prefetch_ahead(const void* p, std::size_t bytes = 1024) noexcept {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + bytes), _MM_HINT_T0);
}

/// Loads y[n0 .. n0 + lanes) of a row, clipped to n (zeros past it).
template <class Tag>
LOWBIT_ALWAYS_INLINE typename ops<Tag>::f32 load_clipped(const float* row, std::size_t n0, std::size_t n) noexcept {
  using f32 = typename ops<Tag>::f32;
  constexpr std::size_t W = ops<Tag>::lanes;
  if (n0 + W <= n) return f32::load_unaligned(row + n0);
  alignas(64) float tmp[W] = {};
  if (n0 < n) std::memcpy(tmp, row + n0, (n - n0) * sizeof(float));
  return f32::load_aligned(tmp);
}
/// Stores a batch to y[n0 .. n0 + lanes) of a row, clipped to n.
template <class Tag>
LOWBIT_ALWAYS_INLINE void store_clipped(float* row, std::size_t n0, std::size_t n, const typename ops<Tag>::f32& v) noexcept {
  constexpr std::size_t W = ops<Tag>::lanes;
  if (n0 + W <= n) {
    v.store_unaligned(row + n0);
    return;
  }
  alignas(64) float tmp[W];
  v.store_aligned(tmp);
  if (n0 < n) std::memcpy(row + n0, tmp, (n - n0) * sizeof(float));
}

/// The small-M kernels' epilogue: total[i][p V + v] (+ bias) to rows [0, min(MR, m)) of panels
/// p0 .. p0 + P that are below p_end, each vector clipped at N.
template <class Tag, std::size_t MR, std::size_t P, std::size_t V, class F32>
LOWBIT_ALWAYS_INLINE void store_panel_sums(const F32 (&total)[MR][P * V], std::size_t p0, std::size_t p_end,
                                           std::size_t m, const gemm_output& out) noexcept {
  constexpr std::size_t W = ops<Tag>::lanes;
  for (std::size_t p = 0; p < P && p0 + p < p_end; ++p) {
    for (std::size_t v = 0; v < V; ++v) {
      const std::size_t n0 = (p0 + p) * 16 + v * W;
      const F32 bias = out.bias ? load_clipped<Tag>(out.bias, n0, out.n) : F32(0.0f);
      for (std::size_t i = 0; i < MR && i < m; ++i) store_clipped<Tag>(out.y + i * out.ld, n0, out.n, total[i][p * V + v] + bias);
    }
  }
}

}  // namespace detail

/// Small-M kernel: rows [0, MR) of x (row i at x + min(i, m - 1) * ldx), panels [p_begin, p_end)
/// taken P at a time. With sparse24_columns each lane picks its row's x column (vpermilps).
template <class Tag, class Scheme, std::size_t MR, std::size_t P, class Columns = dense_columns>
void gemm_float_small_m(const panel_matrix<Scheme>& w, const float* x, std::size_t ldx, std::size_t m,
                        std::size_t p_begin, std::size_t p_end, const gemm_output& out,
                        const Columns& columns = {}) noexcept {
  using D = panel_decoder<Tag, typename Scheme::format>;
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  constexpr std::size_t W = O::lanes, V = D::vectors_per_panel, NV = P * V, L = D::per_lane;
  constexpr bool has_zero = Scheme::has_zero;
  using select = sparse24_select<Tag>;
  constexpr std::size_t span = Columns::sparse ? 2 : 1;  // x columns per stored column
  const D dec;
  const std::size_t chunks = w.chunks(), groups = w.shape().groups_per_row();
  const std::size_t group_size = w.shape().group_size, panels = w.panels();
  std::size_t cols = w.shape().cols;  // of x
  if constexpr (!std::is_same<Columns, dense_columns>::value) cols = columns.x_cols;
  const float* xr[MR];
  for (std::size_t i = 0; i < MR; ++i) xr[i] = x + std::min(i, m - 1) * ldx;

  for (std::size_t p0 = p_begin; p0 < p_end; p0 += P) {
    std::size_t panel[P];
    for (std::size_t p = 0; p < P; ++p) panel[p] = std::min(p0 + p, panels - 1);
    f32 total[MR][NV];
    for (auto& row : total)
      for (auto& t : row) t = f32(0.0f);
    for (std::size_t g = 0; g < groups; ++g) {
      const auto range = group_chunks(g, groups, group_size, L, chunks);
      f32 zero[NV];
      if constexpr (has_zero)
        for (std::size_t p = 0; p < P; ++p) load_panel_zeros(dec, w.zeros(panel[p], g), zero + p * V);
      f32 acc[2][MR][NV];
      for (auto& set : acc)
        for (auto& row : set)
          for (auto& a : row) a = f32(0.0f);
      for (std::size_t c = range.begin; c < range.end; ++c) {
        std::size_t k0 = c * L * span;  // x column of the chunk (a chunk never straddles blocks)
        if constexpr (!Columns::sparse) k0 = columns.x_of(c * L);
        // The last chunk may run past cols: its x comes from a zero-padded copy.
        alignas(64) float padded[MR][L * span];
        const float* xs[MR];
        if (k0 + L * span <= cols) {
          for (std::size_t i = 0; i < MR; ++i) xs[i] = xr[i] + k0;
        } else {
          for (std::size_t i = 0; i < MR; ++i) {
            for (std::size_t j = 0; j < L * span; ++j) padded[i][j] = k0 + j < cols ? xr[i][k0 + j] : 0.0f;
            xs[i] = padded[i];
          }
        }
        i32 lanes[NV], positions[NV];
        for (std::size_t p = 0; p < P; ++p) {
          for (std::size_t v = 0; v < V; ++v)
            lanes[p * V + v] = i32::load_aligned(reinterpret_cast<const int32_t*>(w.chunk(panel[p], c)) + v * W);
          lowbit::simd::detail::prefetch_ahead(w.chunk(panel[p], c));
          if constexpr (Columns::sparse) {
            select::template load_positions<L / 4>(columns.at(panel[p], c), positions + p * V);
            lowbit::simd::detail::prefetch_ahead(columns.at(panel[p], c), 512);
          }
        }
        lowbit::simd::detail::static_for<L>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
          constexpr std::size_t j = decltype(J)::value;
          for (std::size_t v = 0; v < NV; ++v) {
            f32 value = dec.template decode<j>(lanes[v]);
            if constexpr (has_zero) value = value - zero[v];
            if constexpr (Columns::sparse) {
              const i32 position = j ? i32(positions[v] >> static_cast<int>(2 * j)) : positions[v];
              for (std::size_t i = 0; i < MR; ++i)
                acc[j & 1][i][v] = xsimd::fma(select::pick(xs[i] + j / 2 * 4, position), value, acc[j & 1][i][v]);
            } else {
              for (std::size_t i = 0; i < MR; ++i) acc[j & 1][i][v] = xsimd::fma(f32(xs[i][j]), value, acc[j & 1][i][v]);
            }
          }
        });
      }
      f32 scale[NV];
      for (std::size_t p = 0; p < P; ++p) load_panel_scales<Tag>(w.scales(panel[p], g), scale + p * V);
      for (std::size_t i = 0; i < MR; ++i)
        for (std::size_t v = 0; v < NV; ++v) total[i][v] = xsimd::fma(acc[0][i][v] + acc[1][i][v], scale[v], total[i][v]);
    }
    lowbit::simd::detail::store_panel_sums<Tag, MR, P, V>(total, p0, p_end, m, out);
  }
}

/// Shape of the large-M kernel per arch: panels per register block and rows of x per block, so
/// that MR x (block_panels * 16 / lanes) accumulators fit the register file with room to spare;
/// and the decoded tile: tile_k columns of tile_panels panels (256 x 256 floats, 256 KiB: L2).
template <class Tag>
struct float_tile_shape {
  static constexpr std::size_t lanes = ops<Tag>::lanes;
  static constexpr std::size_t block_panels = lanes == 16 ? 2 : 1;
  static constexpr std::size_t mr = lanes == 16 ? 12 : (lanes == 8 ? 6 : 2);
  static constexpr std::size_t tile_k = 256;
  static constexpr std::size_t tile_panels = 16;
};

/// Large-M kernel: all m rows of x, panels [p_begin, p_end). As in BLIS, a tile of W (tile_k x
/// tile_panels * 16, decoded once) is reused by every block of MR rows of x, and each such block
/// (MR x tile_k, in L1) by every pair of panels of the tile, so neither W nor x is re-read from
/// memory more than N / (tile_panels * 16) times.
///
/// With bf16 activations (Act = bf16, AVX-512 BF16 only) the tile holds the decoded weights
/// rounded to bf16, in pairs of columns per row, and vdpbf16ps does two products per lane: twice
/// the multiply rate of fp32 FMAs, at bf16 precision for the weights.
///
/// Columns (dense_columns or block_columns) maps the tile's columns to x's in runs.
template <class Tag, class Scheme, class Act = float, class Columns = dense_columns>
void gemm_float_tiled(const panel_matrix<Scheme>& w, const Act* x, std::size_t ldx, std::size_t m,
                      std::size_t p_begin, std::size_t p_end, const gemm_output& out, const Columns& columns = {}) {
  constexpr bool bf16_pairs = std::is_same<Act, bf16>::value;
  static_assert(!bf16_pairs || std::is_same<Columns, dense_columns>::value, "bf16 tiles are dense");
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
  static_assert(!bf16_pairs || Tag::level >= isa::avx512_vnni, "bf16 tiles need AVX-512 BF16");
#else
  static_assert(!bf16_pairs, "bf16 tiles need AVX-512 BF16");
#endif
  using D = panel_decoder<Tag, typename Scheme::format>;
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  using shape = float_tile_shape<Tag>;
  constexpr std::size_t W = O::lanes, V = D::vectors_per_panel, P = shape::block_panels, NV = P * V, L = D::per_lane;
  constexpr std::size_t MR = shape::mr, KC = shape::tile_k, TP = shape::tile_panels;
  static_assert(KC % 8 == 0 && TP % P == 0, "a tile is whole chunks and whole register blocks");
  constexpr bool has_zero = Scheme::has_zero;
  const D dec;
  const std::size_t cols = w.shape().cols;
  // Per thread, allocated once: a panel's decoded columns are contiguous, 16 floats per column.
  thread_local aligned_buffer<float> tile_buffer;
  if (tile_buffer.size() < KC * TP * 16) tile_buffer = aligned_buffer<float>(KC * TP * 16);
  float* const tile = tile_buffer.data();

  for (std::size_t t0 = p_begin; t0 < p_end; t0 += TP) {
    const std::size_t t_end = std::min(p_end, t0 + TP);
    const std::size_t n_begin = t0 * 16, n_end = std::min(out.n, t_end * 16);
    // y starts as the bias (or zero), then each tile adds its columns' share.
    out.start(m, n_begin, n_end);
    for (std::size_t k_begin = 0; k_begin < cols; k_begin += KC) {
      const std::size_t k_end = std::min(cols, k_begin + KC);
      // Decode: element k of row r of panel t0 + q at tile[(q * KC + k - k_begin) * 16 + r].
      for (std::size_t q = 0; q < t_end - t0; ++q) {
        const std::size_t panel = t0 + q;
        panel_group_cursor<Tag, Scheme> group;
        const f32* const scale = group.scale;
        const f32* const zero = group.zero;
        for (std::size_t c = k_begin / L; c * L < k_end; ++c) {
          group.seek(w, dec, panel, c);
          if constexpr (bf16_pairs) {
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
            // Pair p of the tile (columns 2p, 2p + 1): 16 rows x 2 bf16 = 64 bytes, row-interleaved.
            float* dst = tile + (q * KC + c * L - k_begin) / 2 * 16;
            const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                        23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
            const i32 lanes = i32::load_aligned(reinterpret_cast<const int32_t*>(w.chunk(panel, c)));
            f32 values[L];
            lowbit::simd::detail::static_for<L>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
              constexpr std::size_t j = decltype(J)::value;
              f32 value = dec.template decode<j>(lanes);
              if constexpr (has_zero) value = value - zero[0];
              values[j] = value * scale[0];
            });
            for (std::size_t j = 0; j < L; j += 2) {
              const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(values[j + 1], values[j]);
              _mm512_store_si512(dst + j / 2 * 16, _mm512_permutexvar_epi16(interleave, both));
            }
#endif
          } else {
            float* dst = tile + (q * KC + c * L - k_begin) * 16;
            for (std::size_t v = 0; v < V; ++v) {
              const i32 lanes = i32::load_aligned(reinterpret_cast<const int32_t*>(w.chunk(panel, c)) + v * W);
              lowbit::simd::detail::static_for<L>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
                constexpr std::size_t j = decltype(J)::value;
                f32 value = dec.template decode<j>(lanes);
                if constexpr (has_zero) value = value - zero[v];
                (value * scale[v]).store_aligned(dst + j * 16 + v * W);
              });
            }
          }
        }
      }
      // Register blocks: MR rows of x against P panels of the tile.
      for (std::size_t i0 = 0; i0 < m; i0 += MR) {
        const Act* xr[MR];
        for (std::size_t i = 0; i < MR; ++i) xr[i] = x + std::min(i0 + i, m - 1) * ldx;
        for (std::size_t q0 = 0; q0 < t_end - t0; q0 += P) {
          const std::size_t nb = (t0 + q0) * 16, ne = std::min(n_end, (t0 + std::min(q0 + P, t_end - t0)) * 16);
          f32 acc[MR][NV];
          for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t v = 0; v < NV; ++v)
              acc[i][v] = i0 + i < m ? lowbit::simd::detail::load_clipped<Tag>(out.y + (i0 + i) * out.ld, nb + v * W, ne)
                                     : f32(0.0f);
          if constexpr (bf16_pairs) {
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
            const float* t = tile + q0 * KC / 2 * 16;
            const std::size_t pairs = (k_end - k_begin) / 2;
            for (std::size_t pair = 0; pair < pairs; ++pair, t += 16) {
              __m512 wv[NV];
              for (std::size_t v = 0; v < NV; ++v) wv[v] = _mm512_load_ps(t + v * KC / 2 * 16);
              for (std::size_t i = 0; i < MR; ++i) {
                const __m512i xb = _mm512_set1_epi32(static_cast<int>(
                    lowbit::simd::detail::load_u32(reinterpret_cast<const uint8_t*>(xr[i] + k_begin + 2 * pair))));
                for (std::size_t v = 0; v < NV; ++v)
                  acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)wv[v], (__m512bh)xb);
              }
            }
            if ((k_end - k_begin) % 2) {  // the row's last column pairs with a zero (x has no column K)
              __m512 wv[NV];
              for (std::size_t v = 0; v < NV; ++v) wv[v] = _mm512_load_ps(t + v * KC / 2 * 16);
              for (std::size_t i = 0; i < MR; ++i) {
                const __m512i xb = _mm512_set1_epi32(xr[i][k_end - 1].bits);
                for (std::size_t v = 0; v < NV; ++v)
                  acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)wv[v], (__m512bh)xb);
              }
            }
#endif
          } else {
            // Panel q0 + v / V of the block: its columns are KC * 16 floats apart from the next panel's.
            const float* t = tile + q0 * KC * 16;
            for (std::size_t run = k_begin; run < k_end;) {
              const std::size_t run_stop = std::min(k_end, columns.run_end(run));
              const float* xs[MR];  // x at the run's first column
              for (std::size_t i = 0; i < MR; ++i) xs[i] = xr[i] + columns.x_of(run);
              for (std::size_t k = run; k < run_stop; ++k, t += 16) {
                f32 wv[NV];
                for (std::size_t v = 0; v < NV; ++v) wv[v] = f32::load_aligned(t + (v / V) * KC * 16 + (v % V) * W);
                for (std::size_t i = 0; i < MR; ++i) {
                  const f32 xb(xs[i][k - run]);
                  for (std::size_t v = 0; v < NV; ++v) acc[i][v] = xsimd::fma(xb, wv[v], acc[i][v]);
                }
              }
              run = run_stop;
            }
          }
          for (std::size_t i = 0; i < MR && i0 + i < m; ++i)
            for (std::size_t v = 0; v < NV; ++v)
              lowbit::simd::detail::store_clipped<Tag>(out.y + (i0 + i) * out.ld, nb + v * W, ne, acc[i][v]);
        }
      }
    }
  }
}

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
