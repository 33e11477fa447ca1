/// \file
/// \brief cuda::packed_weights: a quantized_matrix shuffled once on the host into the GPU GEMM's layout and uploaded.
///
/// Layout (the Marlin idea: every weight load is one coalesced 16-byte load per lane, already in
/// the order the tensor cores want). Rows are cut into tiles of 16 outputs, K into chunks of 64.
/// A warp reads one (tile, chunk) as 32 lanes x 16 bytes (4-bit) or 2 x 32 lanes x 16 bytes (8-bit):
/// lane (g = lane / 4, t = lane % 4) holds rows g and g + 8 of the tile at k = chunk * 64 + 16 t
/// .. + 16. The kernel feeds those 16 k to mma.m16n8k16 in a permuted order and loads the
/// activations with the same permutation (a dot product does not care about the order of k), so
/// the activations are also read as 16-byte vectors. Inside a lane's bytes, codes sit where the
/// register dequantizer wants them (see detail::place_code). N and K are padded with zero codes and
/// zero scales; padded k meet zero activations.
///
/// Per (tile, group, row) one 32-bit word: the fp16 scale (low half) and, for integer formats, the
/// fp16 bias 1024 + zero (high half) that the magic-number dequantizer subtracts.
///
/// MXFP4 (blocks of 32, E8M0 scales): a chunk holds two blocks, and each mma must see one block
/// only (the scale multiplies its fp32 sums), so lane t holds k = 8t .. 8t + 8 (block 0: mmas 0,
/// 1) and 32 + 8t .. 32 + 8t + 8 (block 1: mmas 2, 3) of the chunk; the activations are loaded
/// with the same split. The "group" is the chunk: one word per (tile, chunk, row) holds the two
/// blocks' E8M0 bytes (byte 0, byte 1; a missing block past K gets 127, 2^0).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "../layout/quantized_matrix.hpp"
#include "../scheme.hpp"

namespace lowbit {
namespace cuda {

/// Throws lowbit::error naming the call and CUDA's message when a runtime call fails.
#define LOWBIT_CUDA_CHECK(call)                                                                        \
  do {                                                                                                 \
    const cudaError_t lowbit_cuda_status_ = (call);                                                    \
    LOWBIT_CHECK(lowbit_cuda_status_ == cudaSuccess, #call << ": " << cudaGetErrorString(lowbit_cuda_status_)); \
  } while (0)

inline constexpr std::size_t tile_rows = 16;   ///< outputs per tile (the mma's M dimension)
inline constexpr std::size_t chunk_cols = 64;  ///< K per 16-byte-per-lane load of 4-bit codes

/// How a scheme's codes become the values fed to the tensor cores.
enum class dequant_kind {
  integer,  ///< 4/8-bit integers: code | 0x6400 is the fp16 1024 + code; minus (1024 + zero)
  table,    ///< 4-bit codebook / float formats: a byte (two codes) -> half2 table, built per block from a code_table
  e2m1,     ///< FP4 E2M1 by bit moves: its bits placed in an fp16 are the value times 2^-14
  e4m3,     ///< FP8 E4M3 by bit moves: its bits placed in an fp16 are the value times 2^-8
  mxfp4,    ///< E2M1 as e2m1, with MX blocks of 32 and E8M0 scales (the split K layout below)
};

/// What the GPU kernels support of a scheme, and how they decode it.
template <class Scheme>
struct gpu_scheme {
  using format = typename Scheme::format;
  using traits = format_traits<format>;
  static constexpr int bits = Scheme::bits;
  static constexpr bool is_integer = traits::kind == format_kind::integer;
  /// MXFP4 (mx::fp4): E2M1 codes, an E8M0 scale per block of 32.
  static constexpr bool mx = std::is_same<typename Scheme::scale_type, e8m0>::value && std::is_same<format, fp4_e2m1>::value;
  static constexpr dequant_kind kind = is_integer                                ? dequant_kind::integer
                                       : mx                                    ? dequant_kind::mxfp4
                                       : std::is_same<format, fp4_e2m1>::value ? dequant_kind::e2m1
                                       : std::is_same<format, fp8_e4m3>::value ? dequant_kind::e4m3
                                                                               : dequant_kind::table;
  static constexpr bool supported = mx || (std::is_same<typename Scheme::scale_type, fp16>::value &&
                                           (bits == 4 || (bits == 8 && (is_integer || kind == dequant_kind::e4m3))));
  /// Codes are stored biased to unsigned (two's complement sign bit flipped) so that one
  /// magic-number trick serves signed and unsigned integers.
  static constexpr uint8_t bias_code(uint8_t code) noexcept {
    return (is_integer && traits::is_signed) ? static_cast<uint8_t>(code ^ (1u << (bits - 1))) : code;
  }
};

/// dequant_kind::table: a 4-bit format's 16 values (fp16 or bf16 bits) split into bytes for a
/// lookup by prmt, which picks bytes out of a pair of registers by 3-bit indices: words 0-1 hold
/// the low bytes of values 0..7, words 2-3 those of values 8..15, words 4-7 the high bytes in the
/// same order (byte i of word q: value 4q + i). A kernel parameter: each block builds its shared
/// byte -> pair table from it in registers, with no loads.
struct code_table {
  uint32_t words[8];
};

/// A borrowed packed matrix: what the kernels take. Device pointers (and the table by value).
template <class Scheme>
struct packed_view {
  const ::uint4* codes = nullptr;     ///< [tiles][chunks][bits / 4][32 lanes] x 16 bytes
  const uint32_t* scales = nullptr; ///< [tiles][groups][16 rows]: half2(scale, 1024 + zero)
  code_table table[2] = {};         ///< dequant_kind::table: the values in fp16 [0] and bf16 [1]
  std::size_t rows = 0, cols = 0;   ///< N, K
  std::size_t group_size = 0;
  std::size_t chunks = 0;           ///< ceil(K / 64)
  std::size_t chunks_per_group = 0;
  std::size_t groups = 0;           ///< per row
  std::size_t tiles() const noexcept { return (rows + tile_rows - 1) / tile_rows; }
  std::size_t code_bytes() const noexcept { return tiles() * chunks * (Scheme::bits / 4) * 512; }
  std::size_t scale_bytes() const noexcept { return tiles() * groups * tile_rows * 4; }
  /// Bytes one GEMM must read of the weights.
  std::size_t bytes() const noexcept { return code_bytes() + scale_bytes(); }
};

namespace detail {

struct device_deleter {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
using device_buffer = std::unique_ptr<void, device_deleter>;

inline device_buffer upload(const void* host, std::size_t bytes) {
  void* p = nullptr;
  LOWBIT_CUDA_CHECK(cudaMalloc(&p, bytes));
  device_buffer owned(p);
  LOWBIT_CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  return owned;
}

/// Where code (row half r, k offset kk in 0..16) of a lane goes: its byte-stream nibble (4-bit)
/// or byte (8-bit) index inside the lane's 16 (32) bytes. Subtile j = kk / 4 feeds mma j; its
/// register p = r + 2 * ((kk % 4) / 2) holds elements e = kk % 2 = 0, 1 (a0a1 / a2a3 / a4a5 / a6a7
/// of the m16n8k16 A fragment: rows g, g + 8 at k pair 0, then at k pair 1).
template <int Bits, dequant_kind Kind>
constexpr std::size_t place_code(std::size_t r, std::size_t kk) noexcept {
  const std::size_t j = kk / 4, p = r + 2 * ((kk % 4) / 2), e = kk % 2;
  if (Bits == 8) return j * 8 + p * 2 + e;  // word 2j: registers 0, 1; word 2j + 1: registers 2, 3
  // integer, e2m1, mxfp4: nibbles p and p + 4 of word j, one mask puts them in the two halves of a register.
  // table: byte p of word j holds the pair (low nibble first), looked up as one half2.
  return Kind == dequant_kind::table ? j * 8 + 2 * p + e : j * 8 + p + 4 * e;
}

}  // namespace detail

/// Owns a packed matrix on the device (move-only). Made by pack(); view() is what gemm() takes.
template <class Scheme>
class packed_weights {
 public:
  packed_weights() = default;
  packed_view<Scheme> view() const noexcept { return view_; }
  std::size_t rows() const noexcept { return view_.rows; }
  std::size_t cols() const noexcept { return view_.cols; }
  std::size_t bytes() const noexcept { return view_.bytes(); }

  template <class S>
  friend packed_weights<S> pack(const quantized_view<S>& w);

 private:
  packed_view<Scheme> view_{};
  detail::device_buffer codes_, scales_;
};

/// Shuffles a quantized matrix into the GPU layout and uploads it (once, at load time).
/// Preconditions, checked: scheme supported (fp16 scales; 4-bit any format, 8-bit integers or FP8 E4M3), and
/// group_size a multiple of 64 or the whole row (per-channel); MXFP4: blocks of 32, E8M0 scales <= 2^113.
template <class Scheme>
packed_weights<Scheme> pack(const quantized_view<Scheme>& w) {
  using gs = gpu_scheme<Scheme>;
  static_assert(gs::supported,
                "lowbit::cuda: fp16 scales with a 4-bit format, an 8-bit integer format or FP8 E4M3; or MXFP4");
  constexpr int bits = Scheme::bits;
  constexpr dequant_kind kind = gs::kind;
  w.validate();
  const std::size_t n = w.rows(), k = w.cols(), g = w.group_size();
  if constexpr (gs::mx) {
    LOWBIT_CHECK(g == 32, "cuda::pack: MXFP4 needs blocks of 32 (group_size " << g << ")");
  } else {
    LOWBIT_CHECK(g % chunk_cols == 0 || g >= k,
                 "cuda::pack: group_size " << g << " must be a multiple of 64 or the whole row (K=" << k << ")");
  }
  LOWBIT_CHECK(k < (std::size_t(1) << 22) && n < (std::size_t(1) << 30),
               "cuda::pack: " << n << " x " << k << " is too large (K < 2^22, N < 2^30)");
  packed_weights<Scheme> out;
  packed_view<Scheme>& v = out.view_;
  v.rows = n;
  v.cols = k;
  v.group_size = g;
  v.chunks = (k + chunk_cols - 1) / chunk_cols;
  v.chunks_per_group = gs::mx ? 1 : g >= k ? v.chunks : g / chunk_cols;
  v.groups = gs::mx ? v.chunks : w.groups_per_row();
  const std::size_t tiles = v.tiles(), lane_bytes = 16 * (bits / 4);

  std::vector<uint8_t> codes(v.code_bytes(), 0);
  for (std::size_t tile = 0; tile < tiles; ++tile)
    for (std::size_t c = 0; c < v.chunks; ++c) {
      uint8_t* block = codes.data() + (tile * v.chunks + c) * 32 * lane_bytes;
      for (std::size_t lane = 0; lane < 32; ++lane)
        for (std::size_t r = 0; r < 2; ++r) {
          const std::size_t row = tile * tile_rows + lane / 4 + 8 * r;
          for (std::size_t kk = 0; kk < 16; ++kk) {
            const std::size_t col = c * chunk_cols + (gs::mx ? 8 * (lane % 4) + kk + (kk < 8 ? 0 : 24) : 16 * (lane % 4) + kk);
            if (row >= n || col >= k) continue;  // padding stays code 0 (finite in every format)
            const uint8_t code = gs::bias_code(w.code(row, col));
            const std::size_t at = detail::place_code<bits, kind>(r, kk);
            if (bits == 8) {
              // 32 bytes a lane, as two coalesced 16-byte loads: [half][lane][16 bytes]
              block[(at / 16) * 512 + lane * 16 + at % 16] = code;
            } else {
              block[lane * 16 + at / 2] |= static_cast<uint8_t>(code << (4 * (at % 2)));
            }
          }
        }
    }

  std::vector<uint32_t> scales(tiles * v.groups * tile_rows, 0);
  if constexpr (gs::mx) {
    for (std::size_t row = 0; row < n; ++row)
      for (std::size_t c = 0; c < v.chunks; ++c) {
        uint32_t word = 0;
        for (std::size_t b = 0; b < 2; ++b) {
          const std::size_t block = 2 * c + b;
          const uint8_t e = block < w.groups_per_row() ? w.row_scales(row)[block].storage : uint8_t(127);
          LOWBIT_CHECK(e <= 240, "cuda::pack: MXFP4 scale 2^" << int(e) - 127 << " (row " << row << ") is above 2^113");
          word |= uint32_t(e) << (8 * b);
        }
        scales[((row / tile_rows) * v.groups + c) * tile_rows + row % tile_rows] = word;
      }
  } else {
    for (std::size_t row = 0; row < n; ++row)
      for (std::size_t grp = 0; grp < v.groups; ++grp) {
        const uint16_t scale = w.row_scales(row)[grp].bits;
        unsigned zero = gs::bias_code(0);
        if constexpr (Scheme::has_zero) zero = gs::bias_code(w.row_zeros(row)[grp]);
        const uint16_t bias = kind == dequant_kind::integer ? fp16(1024.0f + static_cast<float>(zero)).bits : 0;
        scales[((row / tile_rows) * v.groups + grp) * tile_rows + row % tile_rows] = scale | (uint32_t(bias) << 16);
      }
  }

  out.codes_ = detail::upload(codes.data(), codes.size());
  out.scales_ = detail::upload(scales.data(), scales.size() * 4);
  v.codes = static_cast<const ::uint4*>(out.codes_.get());
  v.scales = static_cast<const uint32_t*>(out.scales_.get());
  if constexpr (kind == dequant_kind::table) {
    for (unsigned c = 0; c < 16; ++c) {  // value c rounded to fp16 and to bf16 (for bf16 activations)
      const float value = gs::traits::decode(static_cast<uint8_t>(c));
      const uint16_t bits[2] = {fp16(value).bits, bf16(value).bits};
      for (int t = 0; t < 2; ++t) {
        v.table[t].words[c / 4] |= uint32_t(bits[t] & 0xffu) << (8 * (c % 4));
        v.table[t].words[4 + c / 4] |= uint32_t(bits[t] >> 8) << (8 * (c % 4));
      }
    }
  }
  return out;
}

}  // namespace cuda
}  // namespace lowbit
