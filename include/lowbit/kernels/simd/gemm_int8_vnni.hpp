/// \file
/// \brief The integer GEMM's many-row kernel on AVX-512 VNNI (W8A8 / W4A8 prefill).
///
/// Goto-style blocking. x is packed once per call, 6 rows interleaved per 4-column step (24
/// bytes a step), K block by K block: one sequential stream per pass over a K block, which the
/// kernel prefetches ahead. Per 4 panels (a quad, 64 outputs) and K block of 2048 columns, the
/// weights are decoded once into the unsigned bytes vpdpbusd reads (int8: code ^ 0x80; 4-bit:
/// nibbles through the format's byte shuffle), [step][panel][64 bytes] = 128 KiB that stay in L2
/// while every block of 6 rows streams past them; the quad's y (M x 64 floats) stays in L2 across
/// its K blocks. (Reading the weights from memory while decoding, ~4% of a call at M = 512, was
/// not hidden by prefetching the next tile's during the row blocks: software prefetches of them
/// did not reach the caches here, and loads in their place stalled as long.) Measured on
/// Zen 5 (32 KiB L1): a 32 KiB tile made to fit L1 costs more in per-block overhead and y traffic
/// than streaming W from L2 saves. The register block is 6 rows x 2 panels, twice per row block
/// (the quad's two pairs; x in L1 the second time): 12 int32 accumulators and their 12 float
/// totals in registers, one broadcast of 4 activation bytes per row and step feeding 2 vpdpbusd,
/// no decoding and no group arithmetic in the inner loop (1 vpdpbusd a cycle, the core's peak,
/// on L1/L2 data). Groups (or their pieces cut by the K block) start their accumulators at
/// -z * sum(q) (z: the u8 zero point or the format's offset; sum(q) from the activations' prefix
/// sums), so each piece's integer dot product is exact in int32 as in gemm_int8_block; a piece
/// ends in one convert and one fma by its scale (x unit) into the totals, added to y times the
/// row's activation scale at the end of the K block.
///
/// 2:4 kept values (sparse24_columns) run the same blocking and epilogue with a step of 4 kept
/// values (8 columns of x): the tile holds the values as signed bytes and, per row of W, the
/// pshufb indices of their columns; x is packed 8 bytes a row and step as q + 128 (unsigned), so
/// one vpbroadcastq, one vpshufb and one vpdpbusd per row and panel cover 128 columns, and the
/// +128 is undone by starting the accumulators at -128 x the piece's sum of values (the same for
/// every row, from the decode). See decode_tile_sparse24.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../core/aligned.hpp"
#include "../../layout/panel.hpp"
#include "../../quant/activations.hpp"
#include "../integer_weights.hpp"
#include "gemm_float.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

// The inner loop is GNU inline assembly using zmm0-26: x86-64 with GCC or Clang only (elsewhere
// gemm_int8_block serves every M).
#if defined(LOWBIT_COMPILED_AVX512_VNNI) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LOWBIT_HAVE_VNNI_TILE_KERNEL 1

namespace vnni {

constexpr std::size_t mr = 6;         ///< rows of x per register block
constexpr std::size_t min_rows = 64;  ///< fewer rows: gemm_int8_block (measured: as fast at 16-64 rows)
constexpr std::size_t panels = 4;     ///< panels per tile (a quad: 64 outputs), 2 per register block
constexpr std::size_t steps = 512;    ///< 4-column steps per K block (2048 columns)
constexpr std::size_t step_bytes = panels * 64;

/// One decoded K block of a quad ([step][panel][64 bytes]) and its pieces (runs of steps inside
/// one group) with their scales and zero points.
struct tile {
  tile(std::size_t max_steps, std::size_t max_pieces, std::size_t stride = step_bytes)
      : bytes(max_steps * stride),
        scales(max_pieces * 64),
        zeros(max_pieces * 64),
        piece_end(max_pieces),
        piece_steps(max_pieces) {}
  aligned_buffer<uint8_t> bytes;
  aligned_buffer<float> scales;           ///< [piece][64]: scale x unit
  aligned_buffer<int32_t> zeros;          ///< [piece][64]: u8 of the zero point, or the offset
  aligned_buffer<std::size_t> piece_end;    ///< absolute step after each piece
  aligned_buffer<std::size_t> piece_steps;  ///< steps of each piece
  std::size_t pieces = 0, step_begin = 0, step_end = 0;
};

/// Steps (4 columns of x each) of the panel layout: 4-bit chunks hold two (low, high nibbles).
template <class Scheme>
std::size_t total_steps(const panel_matrix<Scheme>& w) noexcept {
  return Scheme::bits == 4 ? 2 * w.chunks() : w.chunks();
}

/// x packed for the kernel: [K block][block of 6 rows][step][row][4 bytes], rows past M zeros
/// (one sequential stream per pass of a quad over a K block, which the kernel prefetches ahead:
/// x comes from L3 while the tile holds L2); and the
/// accumulators' start per row block, piece and row: -z * (the row's sum of q over the piece),
/// z = the format's offset, or 1 with zero points (the kernel multiplies by them). Pieces: the
/// runs of steps inside one group and one K block, the same for every quad.
struct packed_x {
  aligned_buffer<int8_t> bytes;
  aligned_buffer<int32_t> init;             ///< [row block][piece][row]
  aligned_buffer<std::size_t> piece_end;    ///< absolute step after each piece
  aligned_buffer<std::size_t> block_first;  ///< first piece of each K block
  std::size_t steps = 0, pieces = 0, blocks = 0;
  std::size_t row_bytes = 4;            ///< bytes of a row per step (2:4: 8, see pack_rows_sparse24)
  std::size_t block_steps = vnni::steps;  ///< steps per K block
  /// Byte offset of row block b's steps from s0 (the start of a K block; those before it are whole).
  std::size_t offset(std::size_t b, std::size_t s0) const noexcept {
    return (s0 * blocks + b * std::min(block_steps, steps - s0)) * mr * row_bytes;
  }
  const int8_t* block(std::size_t b, std::size_t s0) const noexcept { return bytes.data() + offset(b, s0); }
  const int32_t* block_init(std::size_t b, std::size_t s0) const noexcept {
    return init.data() + (b * pieces + block_first[s0 / block_steps]) * mr;
  }
};

/// Sizes x's buffers for `rows` rows and finds the pieces (reusing the buffers when large enough).
inline void prepare(packed_x& x, std::size_t rows, std::size_t steps_total, std::size_t group_size,
                    std::size_t groups, std::size_t row_bytes = 4, std::size_t block_steps = vnni::steps) {
  const std::size_t steps = block_steps;
  const std::size_t blocks = (rows + mr - 1) / mr, k_blocks = (steps_total + steps - 1) / steps;
  const std::size_t max_pieces = k_blocks + groups;
  x.steps = steps_total;
  x.blocks = blocks;
  x.row_bytes = row_bytes;
  x.block_steps = block_steps;
  const std::size_t bytes = blocks * mr * steps_total * row_bytes;
  if (x.bytes.size() < bytes) x.bytes = aligned_buffer<int8_t>(bytes);
  if (x.piece_end.size() < max_pieces) x.piece_end = aligned_buffer<std::size_t>(max_pieces);
  if (x.block_first.size() < k_blocks) x.block_first = aligned_buffer<std::size_t>(k_blocks);
  x.pieces = 0;
  for (std::size_t s = 0; s < steps_total;) {
    if (s % steps == 0) x.block_first[s / steps] = x.pieces;
    const std::size_t block_end = std::min(steps_total, (s / steps + 1) * steps);
    const std::size_t g = std::min(groups - 1, 4 * s / group_size);
    const std::size_t e = g + 1 == groups ? block_end : std::min(block_end, (g + 1) * group_size / 4);
    x.piece_end[x.pieces++] = e;
    s = e;
  }
  if (x.init.size() < blocks * x.pieces * mr) x.init = aligned_buffer<int32_t>(blocks * x.pieces * mr);
}

/// Packs row blocks [b_begin, b_end) of a into x (prepared); z: the offset, or 1 (see packed_x).
inline void pack_rows(const int8_activations& a, int32_t z, std::size_t b_begin, std::size_t b_end,
                      packed_x& x) noexcept {
  const std::size_t steps_total = x.steps;
  for (std::size_t b = b_begin; b < b_end; ++b) {
    static const uint8_t zeros[4] = {};
    const uint8_t* src[mr];
    std::size_t stride[mr];  // rows past M: 4 zero bytes read at every step
    for (std::size_t i = 0; i < mr; ++i) {
      const bool valid = b * mr + i < a.rows();
      src[i] = valid ? reinterpret_cast<const uint8_t*>(a.row(b * mr + i)) : zeros;
      stride[i] = valid ? 4 : 0;
    }
    // Step by step, the 6 rows side by side: sequential stores (row by row, each row's pass
    // strided over the block's whole range, cost 4x more).
    for (std::size_t s0 = 0; s0 < steps_total; s0 += x.block_steps) {
      uint32_t* dst = reinterpret_cast<uint32_t*>(x.bytes.data() + x.offset(b, s0));
      for (std::size_t s = s0, end = std::min(steps_total, s0 + x.block_steps); s < end; ++s, dst += mr)
        for (std::size_t i = 0; i < mr; ++i) dst[i] = lowbit::simd::detail::load_u32(src[i] + stride[i] * s);
    }
    int32_t* init = x.init.data() + b * x.pieces * mr;
    for (std::size_t i = 0; i < mr; ++i) {
      const std::size_t row = b * mr + i;
      if (row < a.rows()) {
        const int32_t* prefix = a.quad_prefix(row);
        for (std::size_t p = 0, s = 0; p < x.pieces; s = x.piece_end[p++])
          init[p * mr + i] = z * (prefix[s] - prefix[x.piece_end[p]]);
      } else {
        for (std::size_t p = 0; p < x.pieces; ++p) init[p * mr + i] = 0;
      }
    }
  }
}

/// The pieces of steps [s0, s1) (runs inside one group; group_size counts x columns, 4 a step)
/// with their scales and zero points, for panels [p0, p0 + count).
template <class Scheme>
void tile_pieces(const panel_matrix<Scheme>& w, std::size_t group_size, std::size_t p0, std::size_t count,
                 std::size_t s0, std::size_t s1, tile& t) noexcept {
  constexpr lowbit::detail::integer_code_map map = integer_codes<typename Scheme::format>::value;
  // A whole-row group may leave a last padded step past it.
  const std::size_t groups = w.shape().groups_per_row();
  const auto group_of = [&](std::size_t s) { return std::min(groups - 1, 4 * s / group_size); };
  t.pieces = 0;
  for (std::size_t s = s0; s < s1;) {
    const std::size_t g = group_of(s);
    const std::size_t e = g + 1 == groups ? s1 : std::min(s1, (g + 1) * group_size / 4);
    for (std::size_t p = 0; p < panels; ++p) {
      __m512 sc = _mm512_setzero_ps();
      __m512i z = _mm512_set1_epi32(map.offset);
      if (p < count) {
        typename ops<arch::avx512_vnni_tag>::f32 f[1];
        load_panel_scales<arch::avx512_vnni_tag>(w.scales(p0 + p, g), f);
        sc = _mm512_mul_ps(f[0], _mm512_set1_ps(map.unit));
        if constexpr (Scheme::has_zero) {
          alignas(64) int32_t zz[16];
          for (int r = 0; r < 16; ++r) zz[r] = map.u8[w.zeros(p0 + p, g)[r]];
          z = _mm512_load_si512(zz);
        }
      }
      _mm512_store_ps(t.scales.data() + t.pieces * 64 + p * 16, sc);
      _mm512_store_si512(t.zeros.data() + t.pieces * 64 + p * 16, z);
    }
    t.piece_steps[t.pieces] = e - s;
    t.piece_end[t.pieces++] = e;
    s = e;
  }
}

/// Decodes steps [s0, s1) of panels [p0, p0 + count) (count <= 4; panels past count: zeros).
template <class Scheme>
void decode_tile(const panel_matrix<Scheme>& w, std::size_t p0, std::size_t count, std::size_t s0, std::size_t s1,
                 tile& t) noexcept {
  using format = typename Scheme::format;
  constexpr lowbit::detail::integer_code_map map = integer_codes<format>::value;
  const __m512i lut = _mm512_loadu_si512(integer_codes<format>::value.shuffle.data());
  const __m512i nibble = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8(static_cast<char>(map.flip));
  t.step_begin = s0;
  t.step_end = s1;
  uint8_t* dst = t.bytes.data();
  for (std::size_t p = count; p < panels; ++p)  // panels past count: zeros
    for (std::size_t s = s0; s < s1; ++s) _mm512_store_si512(dst + (s - s0) * step_bytes + p * 64, _mm512_setzero_si512());
  // Step by step, the panels side by side: `count` sequential streams from memory in flight (one
  // panel after the other, one stream at a time, took ~1.5x as long).
  if constexpr (Scheme::bits == 4) {
    for (std::size_t s = s0; s < s1; s += 2)  // s0 and s1 even: whole chunks
      for (std::size_t p = 0; p < count; ++p) {
        const __m512i lanes = _mm512_load_si512(w.chunk(p0 + p, s / 2));
        __m512i low = _mm512_and_si512(lanes, nibble), high = _mm512_and_si512(_mm512_srli_epi16(lanes, 4), nibble);
        if constexpr (!map.identity) {
          low = _mm512_shuffle_epi8(lut, low);
          high = _mm512_shuffle_epi8(lut, high);
        }
        _mm512_store_si512(dst + (s - s0) * step_bytes + p * 64, low);
        _mm512_store_si512(dst + (s + 1 - s0) * step_bytes + p * 64, high);
      }
  } else {
    for (std::size_t s = s0; s < s1; ++s)
      for (std::size_t p = 0; p < count; ++p)
        _mm512_store_si512(dst + (s - s0) * step_bytes + p * 64,
                           _mm512_xor_si512(_mm512_load_si512(w.chunk(p0 + p, s)), flip));
  }
  tile_pieces(w, w.shape().group_size, p0, count, s0, s1, t);
}

/// x for the 2:4 tile kernel: [K block][block of 6 rows][step][row][8 bytes], a step being 8
/// columns (the 2 groups that 4 kept values of a row cover), each byte q + 128 (the u8 operand
/// of vpdpbusd: the weights are the signed one here, since each lane reads other activations and
/// only the weights' sums are the same for every row). Past the row's columns: q = 0 (u8 128).
inline void pack_rows_sparse24(const int8_activations& a, std::size_t b_begin, std::size_t b_end, packed_x& x) noexcept {
  constexpr uint64_t flip = 0x8080808080808080ull;
  const std::size_t steps_total = x.steps, whole = a.padded_cols() / 8;  // steps inside the padded row
  for (std::size_t b = b_begin; b < b_end; ++b)
    for (std::size_t s0 = 0; s0 < steps_total; s0 += x.block_steps) {
      uint64_t* dst = reinterpret_cast<uint64_t*>(x.bytes.data() + x.offset(b, s0));
      for (std::size_t s = s0, end = std::min(steps_total, s0 + x.block_steps); s < end; ++s, dst += mr)
        for (std::size_t i = 0; i < mr; ++i) {
          uint64_t q = 0;
          if (b * mr + i < a.rows() && s < whole) std::memcpy(&q, a.row(b * mr + i) + 8 * s, 8);
          dst[i] = q ^ flip;
        }
    }
}

/// Whether 2:4 kept values of Scheme take the 2:4 tile kernel: their integer values (u8 - offset,
/// or u8 - u8(zero point)) must be signed bytes. Not uint8 with zero points (-255..255).
template <class Scheme>
constexpr bool sparse24_tile_fits() noexcept {
  constexpr lowbit::detail::integer_code_map map = integer_codes<typename Scheme::format>::value;
  return Scheme::has_zero ? map.max_u8 <= 127 : map.offset <= 128 && map.max_u8 - map.offset <= 127;
}
constexpr std::size_t sparse24_steps = 256;                 ///< steps (8 columns) per K block: 2048 columns
constexpr std::size_t sparse24_step_bytes = 2 * step_bytes;  ///< a quad's values and indices

/// 2:4 kept values (sparse24_columns), steps [s0, s1) of 4 kept values (8 x columns) of panels
/// [p0, p0 + count), pair by pair (panels 0-1, then 2-3: each pair's steps one sequential run of
/// 256 bytes a step): each panel's 64 signed bytes (value - zero, the signed operand of vpdpbusd)
/// at 64 x (panel % 2) and its pshufb indices 128 bytes further (row r's 4 bytes: the 4 kept
/// values' columns among the step's 8, from the 2-bit positions); the pieces' start values
/// in zeros: -128 x (the row's sum of the piece's values), which cancels the activations' +128.
/// 8-bit chunks hold a step, 4-bit chunks two (low nibbles: kept values 0-3, high: 4-7).
template <class Scheme>
void decode_tile_sparse24(const panel_matrix<Scheme>& w, const sparse24_columns& columns, std::size_t p0,
                          std::size_t count, std::size_t s0, std::size_t s1, tile& t) noexcept {
  using format = typename Scheme::format;
  constexpr lowbit::detail::integer_code_map map = integer_codes<format>::value;
  static_assert(sparse24_tile_fits<Scheme>(), "values must be signed bytes");
  tile_pieces(w, w.shape().group_size, p0, count, s0, s1, t);  // groups count kept values, 4 a step
  const __m512i lut = _mm512_loadu_si512(map.shuffle.data()), low_nibbles = _mm512_set1_epi8(0x0F);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(map.flip)), ones = _mm512_set1_epi8(1);
  const __m512i two_bits = _mm512_set1_epi32(0x03030303), second_group = _mm512_set1_epi32(0x04040000);
  const __m512i spread = _mm512_set1_epi32(0x01010101);
  // vpmultishiftqb controls: byte j of each row's dword gets the row's bits 2j.. (its kept value
  // j's position in bits 0-1) of the position byte at bit 0 or, for a 4-bit chunk's second step,
  // at bit 8 (two rows a qword).
  const __m512i pick_bits[2] = {_mm512_set1_epi64(0x2624222006040200ll), _mm512_set1_epi64(0x2E2C2A280E0C0A08ll)};
  t.step_begin = s0;
  t.step_end = s1;
  // Chunk c of a panel: 64 bytes of values and 16 x row_bytes of positions (one or two steps).
  constexpr std::size_t per_chunk = Scheme::bits == 4 ? 2 : 1, position_bytes = 16 * per_chunk;
  const uint8_t* chunks[panels];
  const uint8_t* positions[panels];
  for (std::size_t p = 0; p < count; ++p) {
    chunks[p] = w.chunk(p0 + p, 0);
    positions[p] = columns.at(p0 + p, 0);
  }
  std::size_t s = s0;
  for (std::size_t piece = 0; piece < t.pieces; ++piece) {
    int32_t* const start = t.zeros.data() + piece * 64;
    __m512i zero[panels], sum[panels];
    for (std::size_t p = 0; p < panels; ++p) {
      // u8 of the zero point (tile_pieces put it, or the offset, per row) in each byte of the row.
      zero[p] = _mm512_mullo_epi32(_mm512_load_si512(start + p * 16), spread);
      sum[p] = _mm512_setzero_si512();
    }
    for (; s < t.piece_end[piece]; ++s) {
      uint8_t* const dst = t.bytes.data() + (s - s0) * sparse24_step_bytes / 2;
      for (std::size_t p = 0; p < panels; ++p) {
        __m512i values = _mm512_setzero_si512(), index = _mm512_setzero_si512();
        if (p < count) {
          __m512i u8, position;
          const __m512i lanes = _mm512_load_si512(chunks[p] + s / per_chunk * 64);
          const uint8_t* const position_row = positions[p] + s / per_chunk * position_bytes;
          if constexpr (Scheme::bits == 4) {
            u8 = _mm512_and_si512(s % 2 ? _mm512_srli_epi16(lanes, 4) : lanes, low_nibbles);
            if constexpr (!map.identity) u8 = _mm512_shuffle_epi8(lut, u8);
            position = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(position_row)));
          } else {
            u8 = _mm512_xor_si512(lanes, flip);
            position = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(position_row)));
          }
          values = _mm512_sub_epi8(u8, zero[p]);
          // Kept value j's 2 bits to byte j, plus 4 for the second group (one vpternlogd).
          const __m512i bits = _mm512_multishift_epi64_epi8(pick_bits[Scheme::bits == 4 ? s % 2 : 0], position);
          index = _mm512_or_si512(_mm512_and_si512(bits, two_bits), second_group);
        }
        uint8_t* const pair = dst + p / 2 * (s1 - s0) * sparse24_step_bytes / 2 + p % 2 * 64;
        _mm512_store_si512(pair, values);
        _mm512_store_si512(pair + 128, index);
        sum[p] = _mm512_dpbusd_epi32(sum[p], ones, values);
      }
    }
    for (std::size_t p = 0; p < panels; ++p)
      _mm512_store_si512(start + p * 16, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum[p], 7)));
  }
}

// A pair of panels at a time: the 12 int32 accumulators (zmm0-11) and their 12 float totals
// (zmm12-23) both stay in registers, so a piece ends in one convert and one fma per accumulator
// and no memory traffic. The 6 x 4 block before (24 accumulators, totals in memory) lost ~7% of
// its time at groups of 128 to those loads and stores and ~25% at groups of 32 (measured); two
// passes of 6 x 2 over the same x (in L1 the second time) cost nothing measurable at one piece.
// The two variants differ only in where the accumulators start: zero points times the rows'
// start values (HasZero), or the start values themselves (offset correction precomputed).
#define LOWBIT_VNNI_CLEAR \
  "vpxord %%zmm12, %%zmm12, %%zmm12\n\t" \
  "vpxord %%zmm13, %%zmm13, %%zmm13\n\t" \
  "vpxord %%zmm14, %%zmm14, %%zmm14\n\t" \
  "vpxord %%zmm15, %%zmm15, %%zmm15\n\t" \
  "vpxord %%zmm16, %%zmm16, %%zmm16\n\t" \
  "vpxord %%zmm17, %%zmm17, %%zmm17\n\t" \
  "vpxord %%zmm18, %%zmm18, %%zmm18\n\t" \
  "vpxord %%zmm19, %%zmm19, %%zmm19\n\t" \
  "vpxord %%zmm20, %%zmm20, %%zmm20\n\t" \
  "vpxord %%zmm21, %%zmm21, %%zmm21\n\t" \
  "vpxord %%zmm22, %%zmm22, %%zmm22\n\t" \
  "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
#define LOWBIT_VNNI_START_ZEROS \
  "vpbroadcastd 0(%[init]), %%zmm26\n\t" \
  "vpmulld 0(%[zp]), %%zmm26, %%zmm0\n\t" \
  "vpmulld 64(%[zp]), %%zmm26, %%zmm1\n\t" \
  "vpbroadcastd 4(%[init]), %%zmm26\n\t" \
  "vpmulld 0(%[zp]), %%zmm26, %%zmm2\n\t" \
  "vpmulld 64(%[zp]), %%zmm26, %%zmm3\n\t" \
  "vpbroadcastd 8(%[init]), %%zmm26\n\t" \
  "vpmulld 0(%[zp]), %%zmm26, %%zmm4\n\t" \
  "vpmulld 64(%[zp]), %%zmm26, %%zmm5\n\t" \
  "vpbroadcastd 12(%[init]), %%zmm26\n\t" \
  "vpmulld 0(%[zp]), %%zmm26, %%zmm6\n\t" \
  "vpmulld 64(%[zp]), %%zmm26, %%zmm7\n\t" \
  "vpbroadcastd 16(%[init]), %%zmm26\n\t" \
  "vpmulld 0(%[zp]), %%zmm26, %%zmm8\n\t" \
  "vpmulld 64(%[zp]), %%zmm26, %%zmm9\n\t" \
  "vpbroadcastd 20(%[init]), %%zmm26\n\t" \
  "vpmulld 0(%[zp]), %%zmm26, %%zmm10\n\t" \
  "vpmulld 64(%[zp]), %%zmm26, %%zmm11\n\t"
#define LOWBIT_VNNI_START_OFFSETS \
  "vpbroadcastd 0(%[init]), %%zmm0\n\t" \
  "vmovdqa64 %%zmm0, %%zmm1\n\t" \
  "vpbroadcastd 4(%[init]), %%zmm2\n\t" \
  "vmovdqa64 %%zmm2, %%zmm3\n\t" \
  "vpbroadcastd 8(%[init]), %%zmm4\n\t" \
  "vmovdqa64 %%zmm4, %%zmm5\n\t" \
  "vpbroadcastd 12(%[init]), %%zmm6\n\t" \
  "vmovdqa64 %%zmm6, %%zmm7\n\t" \
  "vpbroadcastd 16(%[init]), %%zmm8\n\t" \
  "vmovdqa64 %%zmm8, %%zmm9\n\t" \
  "vpbroadcastd 20(%[init]), %%zmm10\n\t" \
  "vmovdqa64 %%zmm10, %%zmm11\n\t"
#define LOWBIT_VNNI_STEPS \
  "mov (%[cnt]), %[n]\n\t" \
  "1:\n\t" \
  "vmovdqa64 0(%[w]), %%zmm24\n\t" \
  "vmovdqa64 64(%[w]), %%zmm25\n\t" \
  "vpbroadcastd 0(%[x]), %%zmm26\n\t" \
  "prefetcht0 1536(%[x])\n\t" \
  "vpdpbusd %%zmm26, %%zmm24, %%zmm0\n\t" \
  "vpdpbusd %%zmm26, %%zmm25, %%zmm1\n\t" \
  "vpbroadcastd 4(%[x]), %%zmm26\n\t" \
  "vpdpbusd %%zmm26, %%zmm24, %%zmm2\n\t" \
  "vpdpbusd %%zmm26, %%zmm25, %%zmm3\n\t" \
  "vpbroadcastd 8(%[x]), %%zmm26\n\t" \
  "vpdpbusd %%zmm26, %%zmm24, %%zmm4\n\t" \
  "vpdpbusd %%zmm26, %%zmm25, %%zmm5\n\t" \
  "vpbroadcastd 12(%[x]), %%zmm26\n\t" \
  "vpdpbusd %%zmm26, %%zmm24, %%zmm6\n\t" \
  "vpdpbusd %%zmm26, %%zmm25, %%zmm7\n\t" \
  "vpbroadcastd 16(%[x]), %%zmm26\n\t" \
  "vpdpbusd %%zmm26, %%zmm24, %%zmm8\n\t" \
  "vpdpbusd %%zmm26, %%zmm25, %%zmm9\n\t" \
  "vpbroadcastd 20(%[x]), %%zmm26\n\t" \
  "vpdpbusd %%zmm26, %%zmm24, %%zmm10\n\t" \
  "vpdpbusd %%zmm26, %%zmm25, %%zmm11\n\t" \
  "add $256, %[w]\n\t" \
  "add $24, %[x]\n\t" \
  "dec %[n]\n\t" \
  "jnz 1b\n\t"
#define LOWBIT_VNNI_END_PIECE \
  "vmovaps 0(%[sp]), %%zmm24\n\t" \
  "vmovaps 64(%[sp]), %%zmm25\n\t" \
  "vcvtdq2ps %%zmm0, %%zmm0\n\t" \
  "vfmadd231ps %%zmm0, %%zmm24, %%zmm12\n\t" \
  "vcvtdq2ps %%zmm1, %%zmm1\n\t" \
  "vfmadd231ps %%zmm1, %%zmm25, %%zmm13\n\t" \
  "vcvtdq2ps %%zmm2, %%zmm2\n\t" \
  "vfmadd231ps %%zmm2, %%zmm24, %%zmm14\n\t" \
  "vcvtdq2ps %%zmm3, %%zmm3\n\t" \
  "vfmadd231ps %%zmm3, %%zmm25, %%zmm15\n\t" \
  "vcvtdq2ps %%zmm4, %%zmm4\n\t" \
  "vfmadd231ps %%zmm4, %%zmm24, %%zmm16\n\t" \
  "vcvtdq2ps %%zmm5, %%zmm5\n\t" \
  "vfmadd231ps %%zmm5, %%zmm25, %%zmm17\n\t" \
  "vcvtdq2ps %%zmm6, %%zmm6\n\t" \
  "vfmadd231ps %%zmm6, %%zmm24, %%zmm18\n\t" \
  "vcvtdq2ps %%zmm7, %%zmm7\n\t" \
  "vfmadd231ps %%zmm7, %%zmm25, %%zmm19\n\t" \
  "vcvtdq2ps %%zmm8, %%zmm8\n\t" \
  "vfmadd231ps %%zmm8, %%zmm24, %%zmm20\n\t" \
  "vcvtdq2ps %%zmm9, %%zmm9\n\t" \
  "vfmadd231ps %%zmm9, %%zmm25, %%zmm21\n\t" \
  "vcvtdq2ps %%zmm10, %%zmm10\n\t" \
  "vfmadd231ps %%zmm10, %%zmm24, %%zmm22\n\t" \
  "vcvtdq2ps %%zmm11, %%zmm11\n\t" \
  "vfmadd231ps %%zmm11, %%zmm25, %%zmm23\n\t" \
  "add $24, %[init]\n\t" \
  "add $256, %[sp]\n\t" \
  "add $256, %[zp]\n\t" \
  "add $8, %[cnt]\n\t" \
  "dec %[np]\n\t" \
  "jnz 2b\n\t"
// 2:4 (decode_tile_sparse24): the accumulators start at the tile's per-row start values (the
// same for the 6 rows of x); a step broadcasts 8 columns of a row of x to every 128-bit lane,
// and each panel's pshufb picks every lane's 4 kept columns out of them for one vpdpbusd: 128
// columns of products per vpdpbusd where the dense step has 64. zmm27-28 hold the step's
// indices, zmm29-30 the picked activations.
#define LOWBIT_VNNI_START_SPARSE24 \
  "vmovdqa64 0(%[zp]), %%zmm0\n\t" \
  "vmovdqa64 64(%[zp]), %%zmm1\n\t" \
  "vmovdqa64 %%zmm0, %%zmm2\n\t" \
  "vmovdqa64 %%zmm1, %%zmm3\n\t" \
  "vmovdqa64 %%zmm0, %%zmm4\n\t" \
  "vmovdqa64 %%zmm1, %%zmm5\n\t" \
  "vmovdqa64 %%zmm0, %%zmm6\n\t" \
  "vmovdqa64 %%zmm1, %%zmm7\n\t" \
  "vmovdqa64 %%zmm0, %%zmm8\n\t" \
  "vmovdqa64 %%zmm1, %%zmm9\n\t" \
  "vmovdqa64 %%zmm0, %%zmm10\n\t" \
  "vmovdqa64 %%zmm1, %%zmm11\n\t"
#define LOWBIT_VNNI_STEPS_SPARSE24 \
  "mov (%[cnt]), %[n]\n\t" \
  "1:\n\t" \
  "vmovdqa64 0(%[w]), %%zmm24\n\t" \
  "vmovdqa64 64(%[w]), %%zmm25\n\t" \
  "vmovdqa64 128(%[w]), %%zmm27\n\t" \
  "vmovdqa64 192(%[w]), %%zmm28\n\t" \
  "prefetcht0 3072(%[x])\n\t" \
  "vpbroadcastq 0(%[x]), %%zmm26\n\t" \
  "vpshufb %%zmm27, %%zmm26, %%zmm29\n\t" \
  "vpshufb %%zmm28, %%zmm26, %%zmm30\n\t" \
  "vpdpbusd %%zmm24, %%zmm29, %%zmm0\n\t" \
  "vpdpbusd %%zmm25, %%zmm30, %%zmm1\n\t" \
  "vpbroadcastq 8(%[x]), %%zmm26\n\t" \
  "vpshufb %%zmm27, %%zmm26, %%zmm29\n\t" \
  "vpshufb %%zmm28, %%zmm26, %%zmm30\n\t" \
  "vpdpbusd %%zmm24, %%zmm29, %%zmm2\n\t" \
  "vpdpbusd %%zmm25, %%zmm30, %%zmm3\n\t" \
  "vpbroadcastq 16(%[x]), %%zmm26\n\t" \
  "vpshufb %%zmm27, %%zmm26, %%zmm29\n\t" \
  "vpshufb %%zmm28, %%zmm26, %%zmm30\n\t" \
  "vpdpbusd %%zmm24, %%zmm29, %%zmm4\n\t" \
  "vpdpbusd %%zmm25, %%zmm30, %%zmm5\n\t" \
  "vpbroadcastq 24(%[x]), %%zmm26\n\t" \
  "vpshufb %%zmm27, %%zmm26, %%zmm29\n\t" \
  "vpshufb %%zmm28, %%zmm26, %%zmm30\n\t" \
  "vpdpbusd %%zmm24, %%zmm29, %%zmm6\n\t" \
  "vpdpbusd %%zmm25, %%zmm30, %%zmm7\n\t" \
  "vpbroadcastq 32(%[x]), %%zmm26\n\t" \
  "vpshufb %%zmm27, %%zmm26, %%zmm29\n\t" \
  "vpshufb %%zmm28, %%zmm26, %%zmm30\n\t" \
  "vpdpbusd %%zmm24, %%zmm29, %%zmm8\n\t" \
  "vpdpbusd %%zmm25, %%zmm30, %%zmm9\n\t" \
  "vpbroadcastq 40(%[x]), %%zmm26\n\t" \
  "vpshufb %%zmm27, %%zmm26, %%zmm29\n\t" \
  "vpshufb %%zmm28, %%zmm26, %%zmm30\n\t" \
  "vpdpbusd %%zmm24, %%zmm29, %%zmm10\n\t" \
  "vpdpbusd %%zmm25, %%zmm30, %%zmm11\n\t" \
  "add $256, %[w]\n\t" \
  "add $48, %[x]\n\t" \
  "dec %[n]\n\t" \
  "jnz 1b\n\t"
#define LOWBIT_VNNI_STORE \
  "vmovaps %%zmm12, 0(%[total])\n\t" \
  "vmovaps %%zmm13, 64(%[total])\n\t" \
  "vmovaps %%zmm14, 256(%[total])\n\t" \
  "vmovaps %%zmm15, 320(%[total])\n\t" \
  "vmovaps %%zmm16, 512(%[total])\n\t" \
  "vmovaps %%zmm17, 576(%[total])\n\t" \
  "vmovaps %%zmm18, 768(%[total])\n\t" \
  "vmovaps %%zmm19, 832(%[total])\n\t" \
  "vmovaps %%zmm20, 1024(%[total])\n\t" \
  "vmovaps %%zmm21, 1088(%[total])\n\t" \
  "vmovaps %%zmm22, 1280(%[total])\n\t" \
  "vmovaps %%zmm23, 1344(%[total])\n\t"
#define LOWBIT_VNNI_OPERANDS \
  : [w] "+r"(wp), [x] "+r"(xp), [n] "=&r"(n), [cnt] "+r"(counts), [np] "+r"(pieces), [init] "+r"(init), \
  [sp] "+r"(scales), [zp] "+r"(zeros) \
  : [total] "r"(total) \
  : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "cc", "memory"

/// The register block over a K block, for the pair of panels at wp (the tile's step of 256 bytes
/// read 128 of them) and at scales and zeros: for each of `pieces` pieces (counts[p] >= 1 steps
/// each), the 12 int32 accumulators (row i, panel q) start at init[6 p + i] (times the zero
/// points at zeros + 64 p with HasZero), add packed rows i (xp: 24 bytes a step) times panel q of
/// the decoded steps, and end in the float totals += float(acc) * scales[64 p + 16 q ..]; the
/// totals are stored at total[64 i + 16 q ..]. In assembly: GCC 12 keeps intrinsic vpdpbusd
/// accumulators in memory (arrays, or named ones next to a loop) and copies each one around every
/// instruction, 3x the instructions and a third of the speed. zmm24-25 hold a step's weights
/// (then the scales), zmm26 the broadcast activations. Kind: offsets (the start values are the
/// rows' init), zero points (init times the zero points) or 2:4 (the tile's own start values at
/// zeros; wp: a 2:4 pair's run of 256-byte steps, xp: 48 bytes a step).
enum class start { offsets, zeros, sparse24 };
template <start Kind>
void dot_pieces(const uint8_t* wp, const int8_t* xp, const std::size_t* counts, std::size_t pieces,
                const int32_t* init, const float* scales, const int32_t* zeros, float* total) noexcept {
  static_assert(mr == 6 && panels == 4, "dot_pieces is written out for 6 rows, pairs of 4 panels");
  std::size_t n;
  if constexpr (Kind == start::zeros) {
    __asm__ volatile(LOWBIT_VNNI_CLEAR "2:\n\t" LOWBIT_VNNI_START_ZEROS LOWBIT_VNNI_STEPS LOWBIT_VNNI_END_PIECE
                     LOWBIT_VNNI_STORE LOWBIT_VNNI_OPERANDS);
  } else if constexpr (Kind == start::offsets) {
    __asm__ volatile(LOWBIT_VNNI_CLEAR "2:\n\t" LOWBIT_VNNI_START_OFFSETS LOWBIT_VNNI_STEPS LOWBIT_VNNI_END_PIECE
                     LOWBIT_VNNI_STORE LOWBIT_VNNI_OPERANDS);
  } else {
    __asm__ volatile(LOWBIT_VNNI_CLEAR "2:\n\t" LOWBIT_VNNI_START_SPARSE24 LOWBIT_VNNI_STEPS_SPARSE24
                     LOWBIT_VNNI_END_PIECE LOWBIT_VNNI_STORE LOWBIT_VNNI_OPERANDS);
  }
}
#undef LOWBIT_VNNI_CLEAR
#undef LOWBIT_VNNI_STORE
#undef LOWBIT_VNNI_START_ZEROS
#undef LOWBIT_VNNI_START_OFFSETS
#undef LOWBIT_VNNI_STEPS
#undef LOWBIT_VNNI_END_PIECE
#undef LOWBIT_VNNI_START_SPARSE24
#undef LOWBIT_VNNI_STEPS_SPARSE24
#undef LOWBIT_VNNI_OPERANDS

/// Rows i0 .. i0 + 6 of a (x: their packed steps of the tile's K block, init: their accumulators'
/// start for the tile's pieces) times the tile's first `count` panels, times their activation
/// scales, added to y rows (the first `rows` of them, y[i]: at the quad's first output) or, for
/// the first K block, to the bias (null: zero; at the quad's first output); mask[q]: the valid
/// outputs of panel q.
template <start Kind>
void block(const tile& t, std::size_t count, const int8_t* x, const int32_t* init, const int8_activations& a,
           std::size_t i0, float* const* y, std::size_t rows, const __mmask16* mask, bool first,
           const float* bias) noexcept {
  alignas(64) float total[mr * panels * 16];
  const std::size_t pairs = (count + 1) / 2;  // a pair past the quad's panels is skipped
  // Dense: a pair is 128 of each step's 256 bytes; 2:4: a pair's steps are one run of 256 bytes each.
  const std::size_t pair_bytes = Kind == start::sparse24 ? (t.step_end - t.step_begin) * sparse24_step_bytes / 2 : 128;
  for (std::size_t h = 0; h < pairs; ++h)
    dot_pieces<Kind>(t.bytes.data() + h * pair_bytes, x, t.piece_steps.data(), t.pieces, init, t.scales.data() + 32 * h,
                        t.zeros.data() + 32 * h, total + 32 * h);
  for (std::size_t i = 0; i < rows; ++i) {
    const __m512 xs = _mm512_set1_ps(a.scale(i0 + i));
    for (std::size_t q = 0; q < 2 * pairs; ++q) {
      float* yq = y[i] + q * 16;
      const __m512 previous = !first ? _mm512_maskz_loadu_ps(mask[q], yq)
                                     : bias ? _mm512_maskz_loadu_ps(mask[q], bias + q * 16) : _mm512_setzero_ps();
      _mm512_mask_storeu_ps(yq, mask[q], _mm512_fmadd_ps(_mm512_load_ps(total + 64 * i + q * 16), xs, previous));
    }
  }
}

/// The activations' start multiplier of pack_rows for Scheme: its offset, or 1 with zero points.
template <class Scheme>
constexpr int32_t start_multiplier() noexcept {
  return Scheme::has_zero ? 1 : integer_codes<typename Scheme::format>::value.offset;
}

}  // namespace vnni

/// Panels [p_begin, p_end) for all rows of a (x: a packed by pack_rows, or pack_rows_sparse24
/// for 2:4 columns): y = x · Wᵀ + bias.
template <class Scheme, class Columns = dense_columns>
void gemm_int8_vnni(const panel_matrix<Scheme>& w, const int8_activations& a, const vnni::packed_x& x,
                    std::size_t p_begin, std::size_t p_end, const gemm_output& out, const Columns& columns = {}) {
  using namespace vnni;
  constexpr start kind = Columns::sparse ? start::sparse24 : Scheme::has_zero ? start::zeros : start::offsets;
  const std::size_t m = a.rows(), steps_total = x.steps, group_size = w.shape().group_size;  // 4 values a step
  const std::size_t block_steps = std::min(x.block_steps, steps_total);
  const std::size_t max_pieces = std::min(block_steps, (4 * block_steps + group_size - 1) / group_size + 1);
  tile t(block_steps, max_pieces, Columns::sparse ? sparse24_step_bytes : step_bytes);
  for (std::size_t p0 = p_begin; p0 < p_end; p0 += panels) {
    const std::size_t count = std::min(panels, p_end - p0);
    __mmask16 mask[panels];
    for (std::size_t p = 0; p < panels; ++p) {
      const std::size_t n0 = (p0 + p) * 16;
      const std::size_t valid = p < count && n0 < out.n ? std::min<std::size_t>(16, out.n - n0) : 0;
      mask[p] = static_cast<__mmask16>((1u << valid) - 1u);
    }
    for (std::size_t s0 = 0; s0 < steps_total; s0 += block_steps) {
      const std::size_t s1 = std::min(steps_total, s0 + block_steps);
      if constexpr (Columns::sparse) {
        decode_tile_sparse24(w, columns, p0, count, s0, s1, t);
      } else {
        decode_tile(w, p0, count, s0, s1, t);
      }
      for (std::size_t i0 = 0; i0 < m; i0 += mr) {
        float* y[mr];
        for (std::size_t i = 0; i < mr; ++i) y[i] = out.y + std::min(i0 + i, m - 1) * out.ld + p0 * 16;
        block<kind>(t, count, x.block(i0 / mr, s0), x.block_init(i0 / mr, s0), a, i0, y, std::min(mr, m - i0), mask,
                    s0 == 0, out.bias ? out.bias + p0 * 16 : nullptr);
      }
    }
  }
}

#endif  // LOWBIT_HAVE_VNNI_TILE_KERNEL

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
