/// \file
/// \brief cuda::pack_sparse24 and cuda::gemm_sparse24: 2:4 sparse weight-only GEMM y = x · Wᵀ for
/// every M (1..64 here, M > 64 in sparse24_gemm_large.cuh), kept values 4-bit or 8-bit integers or plain fp16 / bf16, fp16 or bf16
/// activations, on the sparse tensor cores (mma.sp).
///
/// The Sparse-Marlin idea on top of the dense kernel (gemm.cuh): W's tile of 16 rows is the sparse
/// operand A of mma.sp.m16n8k32 (16 x 32 dense = 16 x 16 kept values), xᵀ its B (32 x 8); the kept
/// values are integer codes dequantized in registers (the dense kernel's magic-number dequant,
/// detail::dequant), the 2-bit positions are the mma's metadata, so a 2:4 matrix streams half the
/// codes of a dense one plus 1 bit per dense weight of metadata.
///
/// GPU layout (made once on the host by pack_sparse24). Rows are cut into tiles of 16, K into
/// chunks of 128 dense columns (64 kept values per row, 4 mma.sp of 32 columns each). A fragment
/// element (register p, half e) of lane (g = lane / 4, t = lane % 4) for mma i is kept value
/// 16 i + 2t + 8 (p / 2) + e of row g + 8 (p % 2).
///  - int4 codes [tiles][chunks][32 lanes] x 16 bytes: word i of a lane feeds mma i, register p's
///    half e at nibble p + 4e (where detail::dequant<4, integer> wants them).
///  - int8 codes [tiles][chunks][2][32 lanes] x 16 bytes: a lane's 32 bytes (vector 0, then 1),
///    byte 8i + 2p + e (detail::dequant<8, integer>: words 2i, 2i + 1 feed mma i).
///  - metadata [tiles][chunks][16 entries] x 16 bytes: entry 2g + s (s = 0, 1: the two lanes
///    4g + s that hold metadata with sparsity selector 0) word i: for mma i, the 4-bit nibbles of
///    the groups of 4 columns 16 s .. 16 s + 16 of that mma, row g in bits 0..15 and row g + 8 in
///    bits 16..31 (group j of the 4 in bits 4j .. 4j + 3; first kept position in the low 2 bits).
///  - scales [tiles][groups][16 rows]: half2(scale, 1024 + zero), as the dense layout.
///  - plain kept values (sparse24_matrix<float> or <bf16>) instead of codes, stored fp16 or bf16 (the
///    activations' type, chosen at pack time): [tiles][chunks][4][32 lanes] x 16 bytes, vector i of
///    a lane = the 4 registers of mma i's A fragment; no scales.
/// The activations are read as the B fragment wants them (4-byte pairs of k; B of m16n8k32 holds
/// rows 2t, 2t + 1 + 8 r): a 2:4 group's 4 columns are split over two lanes, so they cannot be read as
/// 16-byte vectors like the dense kernel's; staged in shared memory, an mma's four B registers are
/// one ldmatrix.x4.
/// M = 9..16 with integer codes on sm_90a runs sparse24_wgmma_small_kernel on the same layout
/// where faster (sparse24_gemm_wgmma_small.cuh: wgmma.sp m64n16k32, x from shared memory by descriptor).
/// M = 17..64 runs sparse24_wide_kernel on the same layout and helpers (gemm.cuh's wide kernel
/// for 2:4): the warps of a block split N and M and share each chunk of x from shared memory (B
/// fragments by ldmatrix), the blocks split K and the fp32 partials are summed in split order.
/// Preconditions: K % 128 == 0, group size (in kept values) a multiple of 64 or the whole row.
/// Numerics: as the dense kernel (gemm.cuh): integer weights exact in fp16 and bf16, fp32 sums
/// with the group scale applied to each group's fp32 partial sums, output rounded to the
/// activations' type; plain values rounded to nearest once by the pack (float to fp16 or bf16;
/// bf16 values are exact in bf16).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "../sparse/sparse24_matrix.hpp"
#include "../sparse/sparse24_plain.hpp"
#include "gemm.cuh"
#include "l2_policy.cuh"
#include "packed_weights.cuh"
#include "wgmma_common.cuh"

namespace lowbit {
namespace cuda {

inline constexpr std::size_t sparse24_chunk_cols = 128;  ///< dense K per chunk (64 kept values a row)

/// The type plain kept values are stored in on the GPU: the activations' type (gemm_sparse24 takes
/// fp16 values with fp16 activations and bf16 values with bf16 ones).
enum class sparse24_values { fp16, bf16 };

namespace detail {
/// 16-byte vectors a lane reads per chunk: 1 of int4 codes, 2 of int8 codes, 4 of fp16 / bf16 values.
template <class Scheme, bool Plain = is_plain_value<Scheme>::value>
struct sparse24_vecs : std::integral_constant<int, 4> {};
template <class Scheme>
struct sparse24_vecs<Scheme, false> : std::integral_constant<int, Scheme::bits / 4> {};
}  // namespace detail

/// A borrowed packed 2:4 matrix (device pointers): what gemm_sparse24 takes.
template <class Scheme>
struct packed_sparse24_view {
  static constexpr bool plain = is_plain_value<Scheme>::value;
  static constexpr int vecs = detail::sparse24_vecs<Scheme>::value;
  const ::uint4* codes = nullptr;     ///< [tiles][chunks][vecs][32 lanes] x 16 bytes
  const ::uint4* metadata = nullptr;  ///< [tiles][chunks][16] x 16 bytes
  const uint32_t* scales = nullptr;   ///< [tiles][groups][16 rows]; none for plain values
  std::size_t rows = 0, cols = 0;     ///< N, K (dense)
  std::size_t chunks = 0, chunks_per_group = 0, groups = 0;
  bool bf16_values = false;           ///< plain values stored as bf16 (else fp16)
  std::size_t tiles() const noexcept { return (rows + tile_rows - 1) / tile_rows; }
  std::size_t code_bytes() const noexcept { return tiles() * chunks * 512 * vecs; }
  std::size_t metadata_bytes() const noexcept { return tiles() * chunks * 256; }
  std::size_t scale_bytes() const noexcept { return tiles() * groups * tile_rows * 4; }
  /// Bytes one GEMM must read of the weights.
  std::size_t bytes() const noexcept { return code_bytes() + metadata_bytes() + scale_bytes(); }
};

template <class Scheme>
class packed_sparse24;

/// Shuffles a 2:4 matrix into the GPU layout and uploads it: kept values 4- or 8-bit integers with
/// fp16 scales (with or without zero points), or plain (sparse24_matrix<float> or <bf16>) stored as
/// `values` says (default: fp16 for float, bf16 for bf16), rounded to nearest here (|values| must
/// fit fp16 when stored fp16: checked). Any K: the last 128-column chunk is padded (positions 0,
/// 1, code 0; gemm_sparse24 then copies x to a zero-padded buffer). Checked: group size (kept
/// values) a multiple of 64 or the whole row.
template <class Scheme>
packed_sparse24<Scheme> pack_sparse24(const sparse24_matrix<Scheme>& w,
                                      sparse24_values values = std::is_same<Scheme, bf16>::value ? sparse24_values::bf16
                                                                                                : sparse24_values::fp16);

/// Owns a packed 2:4 matrix on the device (move-only). Made by pack_sparse24().
template <class Scheme>
class packed_sparse24 {
 public:
  packed_sparse24_view<Scheme> view() const noexcept { return view_; }
  std::size_t bytes() const noexcept { return view_.bytes(); }
  template <class S>
  friend packed_sparse24<S> pack_sparse24(const sparse24_matrix<S>& w, sparse24_values values);

 private:
  packed_sparse24_view<Scheme> view_{};
  detail::device_buffer codes_, metadata_, scales_;
};

template <class Scheme>
packed_sparse24<Scheme> pack_sparse24(const sparse24_matrix<Scheme>& w, sparse24_values values) {
  constexpr bool plain = is_plain_value<Scheme>::value;
  using gs = gpu_scheme<std::conditional_t<plain, scheme<int4, fp16>, Scheme>>;
  static_assert(plain || (gs::supported && gs::is_integer && (gs::bits == 4 || gs::bits == 8)),
                "lowbit::cuda::pack_sparse24: 4- or 8-bit integer kept values with fp16 scales, or float / bf16");
  const std::size_t n = w.rows(), k = w.cols(), kept = w.kept_cols();
  std::size_t g = kept;
  if constexpr (!plain) g = w.group_size();
  LOWBIT_CHECK(g % 64 == 0 || g >= kept,
               "cuda::pack_sparse24: group_size " << g << " (kept values) must be a multiple of 64 or the whole row");
  LOWBIT_CHECK(k < (std::size_t(1) << 22) && n < (std::size_t(1) << 30), "cuda::pack_sparse24: " << n << " x " << k << " is too large");
  packed_sparse24<Scheme> out;
  packed_sparse24_view<Scheme>& pv = out.view_;
  constexpr int vecs = packed_sparse24_view<Scheme>::vecs;
  pv.rows = n;
  pv.cols = k;
  pv.chunks = (k + sparse24_chunk_cols - 1) / sparse24_chunk_cols;
  pv.chunks_per_group = g >= kept ? pv.chunks : g / 64;
  pv.bf16_values = plain && values == sparse24_values::bf16;
  const std::size_t tiles = pv.tiles();

  std::vector<uint32_t> codes(tiles * pv.chunks * vecs * 32 * 4, 0), meta(tiles * pv.chunks * 16 * 4, 0);
  // A fragment element (register p, half e) of lane / mma i in chunk c: row and kept value index.
  const auto place = [&](std::size_t tile, std::size_t c, std::size_t lane, std::size_t i, std::size_t p, std::size_t e) {
    return std::make_pair(tile * tile_rows + lane / 4 + 8 * (p % 2), c * 64 + 16 * i + 2 * (lane % 4) + 8 * (p / 2) + e);
  };
  // Visits every A fragment element of the real rows and kept values (padding rows keep 0: a zero
  // value, or code 0 times a zero scale; padding columns meet zeros of x): block (the chunk's
  // words), lane, mma i, register p, half e, row, kept index.
  const auto each_element = [&](auto&& visit) {
    for (std::size_t tile = 0; tile < tiles; ++tile)
      for (std::size_t c = 0; c < pv.chunks; ++c) {
        uint32_t* block = codes.data() + (tile * pv.chunks + c) * vecs * 128;
        for (std::size_t lane = 0; lane < 32; ++lane)
          for (std::size_t i = 0; i < 4; ++i)
            for (std::size_t p = 0; p < 4; ++p)
              for (std::size_t e = 0; e < 2; ++e) {
                const auto at = place(tile, c, lane, i, p, e);
                if (at.first < n && at.second < kept) visit(block, lane, i, p, e, at.first, at.second);
              }
      }
  };
  std::vector<uint32_t> scales;
  if constexpr (plain) {
    // [vec i][lane] x 4 words: word p is register p of mma i, a half2 / bf16x2 (e = 0 low).
    each_element([&](uint32_t* block, std::size_t lane, std::size_t i, std::size_t p, std::size_t e, std::size_t row,
                     std::size_t j) {
      const auto kept_value = w.value(row, j);
      uint16_t bits = 0;
      if (pv.bf16_values) {
        if constexpr (std::is_same<Scheme, bf16>::value) bits = kept_value.bits;
        else bits = bf16(kept_value).bits;
      } else {
        const float value = lowbit::detail::plain_to_float(kept_value);
        LOWBIT_CHECK(std::fabs(value) <= 65504.0f,
                     "cuda::pack_sparse24: kept value (" << row << ", " << j << ") = " << value << " overflows fp16");
        bits = fp16(value).bits;
      }
      block[(i * 32 + lane) * 4 + p] |= uint32_t(bits) << (16 * e);
    });
  } else {
    const quantized_matrix<Scheme> kept_values = w.kept_values();
    const quantized_view<Scheme> v = kept_values.view();
    pv.groups = std::max<std::size_t>(v.groups_per_row(), (pv.chunks + pv.chunks_per_group - 1) / pv.chunks_per_group);
    each_element([&](uint32_t* block, std::size_t lane, std::size_t i, std::size_t p, std::size_t e, std::size_t row,
                     std::size_t j) {
      const uint32_t code = gs::bias_code(v.code(row, j));
      if constexpr (vecs == 1) {
        block[lane * 4 + i] |= code << (4 * (p + 4 * e));  // word i, nibble p + 4e
      } else {
        const std::size_t byte = 8 * i + 2 * p + e;  // of the lane's 32: vector byte / 16
        block[((byte / 16) * 32 + lane) * 4 + (byte % 16) / 4] |= code << (8 * (byte % 4));
      }
    });
    scales.assign(tiles * pv.groups * tile_rows, 0);
    for (std::size_t row = 0; row < n; ++row)
      for (std::size_t grp = 0; grp < v.groups_per_row(); ++grp) {
        const uint16_t scale = v.row_scales(row)[grp].bits;
        unsigned zero = gs::bias_code(0);
        if constexpr (Scheme::has_zero) zero = gs::bias_code(v.row_zeros(row)[grp]);
        const uint16_t bias = fp16(1024.0f + static_cast<float>(zero)).bits;
        scales[((row / tile_rows) * pv.groups + grp) * tile_rows + row % tile_rows] = scale | (uint32_t(bias) << 16);
      }
  }
  const std::size_t position_groups = sparse24_positions::groups_of(k);
  for (std::size_t tile = 0; tile < tiles; ++tile)
    for (std::size_t c = 0; c < pv.chunks; ++c) {
      uint32_t* mblock = meta.data() + (tile * pv.chunks + c) * 64;
      for (std::size_t entry = 0; entry < 16; ++entry)
        for (std::size_t i = 0; i < 4; ++i) {
          uint32_t word = 0;
          for (std::size_t half = 0; half < 2; ++half)
            for (std::size_t q = 0; q < 4; ++q) {
              const std::size_t row = tile * tile_rows + entry / 2 + 8 * half;
              // Group of 4 dense columns: chunk c, mma i, the lane's half s = entry % 2, group q of 4.
              const std::size_t grp = c * 32 + 8 * i + 4 * (entry % 2) + q;
              // Padding rows and columns: positions 0, 1 (the metadata must name two distinct positions).
              const unsigned nibble = row < n && grp < position_groups
                                          ? (w.position(row, 2 * grp) | (w.position(row, 2 * grp + 1) << 2))
                                          : 0x4u;
              word |= uint32_t(nibble) << (16 * half + 4 * q);
            }
          mblock[entry * 4 + i] = word;
        }
    }
  out.codes_ = detail::upload(codes.data(), codes.size() * 4);
  out.metadata_ = detail::upload(meta.data(), meta.size() * 4);
  if (!scales.empty()) out.scales_ = detail::upload(scales.data(), scales.size() * 4);
  pv.codes = static_cast<const ::uint4*>(out.codes_.get());
  pv.metadata = static_cast<const ::uint4*>(out.metadata_.get());
  pv.scales = static_cast<const uint32_t*>(out.scales_.get());
  return out;
}

namespace detail {

/// D += A(2:4, 16 x 32) · B(32 x 8), fp16 (BF16: bf16) in, fp32 accumulate; metadata from the lanes
/// 4g, 4g + 1 (ordered_metadata: the two positions of a group in increasing order, as
/// sparse24_matrix keeps them).
template <bool BF16>
__device__ __forceinline__ void mma_sp_16832(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t meta) {
  if constexpr (BF16)
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(meta));
  else
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(meta));
}

/// A tile's stage in 16-byte vectors: codes (Vecs per lane), metadata, 16 scale words (codes only).
template <int Vecs>
inline constexpr int sparse24_tile_vecs = 32 * Vecs + 16 + (Vecs == 4 ? 0 : 4);

/// Activation rows of a stage, 128 halves each, padded to 272 bytes (17 vectors) so that the 8 rows
/// an ldmatrix reads at once (16 bytes each) fall in 8 different groups of 4 banks, and the lanes'
/// 4-byte reads (row g, word 4r + t) in 32 different banks.
inline constexpr int sparse24_x_row_vecs = 17;

/// Shared memory of one block: Warps rings of Stages stages of Tiles tiles and XRows activation rows.
template <int Vecs, int Tiles, int Stages, int Warps, int XRows>
inline constexpr std::size_t sparse24_smem_bytes =
    16u * Warps * Stages * (Tiles * sparse24_tile_vecs<Vecs> + XRows * sparse24_x_row_vecs);

/// Splits > 1: block 0 of a cluster's landing area for every block's sums ([split][column][row]),
/// then its mbarrier.
template <int MTiles, int Tiles, int Splits>
inline constexpr std::size_t sparse24_landing_bytes = Splits > 1 ? 4u * Splits * MTiles * 8 * Tiles * 16 + 16u : 0;

/// The most stages, up to Want, whose rings fit the 227 KB a block may have.
template <int Vecs, int Tiles, int Want, int Warps, int XRows>
constexpr int sparse24_fit_stages() {
  if constexpr (Want <= 2 || sparse24_smem_bytes<Vecs, Tiles, Want, Warps, XRows> <= 227u * 1024u) return Want;
  else return sparse24_fit_stages<Vecs, Tiles, Want - 1, Warps, XRows>();
}

/// One tile's operands of a chunk, read from its stage (ts: codes, then metadata, then scale
/// words, as the rings hold them): the metadata words of the 4 mmas and, for integer codes, the
/// lane's code words, the scale words of rows g and g + 8 and the biases detail::dequant subtracts,
/// as gemm.cuh makes them: half2(1024 + zero); int4 rows g + 8 -(64 + zero) = 960 - (1024 + zero);
/// int4 in bf16 bf16x2(-(128 + zero)).
template <int Vecs, bool BF16>
struct sparse24_tile {
  static constexpr bool plain = Vecs == 4;
  static constexpr int meta_at = 32 * Vecs;
  uint32_t meta[4], words[plain ? 1 : 4 * Vecs], sc_g, sc_g8, bias_g, bias_g8;

  __device__ __forceinline__ void load(const ::uint4* ts, int lane) {
    const int g = lane >> 2, t = lane & 3;
    const ::uint4 mq = ts[meta_at + 2 * g + (t & 1)];
    meta[0] = mq.x, meta[1] = mq.y, meta[2] = mq.z, meta[3] = mq.w;
    if constexpr (!plain) {
#pragma unroll
      for (int v = 0; v < Vecs; ++v) {
        const ::uint4 q = ts[v * 32 + lane];
        words[4 * v] = q.x, words[4 * v + 1] = q.y, words[4 * v + 2] = q.z, words[4 * v + 3] = q.w;
      }
      const uint32_t* stage_scales = reinterpret_cast<const uint32_t*>(ts + meta_at + 16);
      sc_g = stage_scales[g], sc_g8 = stage_scales[g + 8];
      bias_g = __byte_perm(sc_g, 0, 0x3232), bias_g8 = __byte_perm(sc_g8, 0, 0x3232);
      if constexpr (BF16 && Vecs == 1) {
        bias_g = bf16x2_bits(896.0f - __high2float(*reinterpret_cast<const __half2*>(&sc_g)));
        bias_g8 = bf16x2_bits(896.0f - __high2float(*reinterpret_cast<const __half2*>(&sc_g8)));
      } else if constexpr (Vecs == 1) {
        asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(bias_g8) : "r"(bias_g8), "r"(0xbc00bc00u), "r"(0x63806380u));
      }
    }
  }
  /// The A fragment of mma i: plain values as the stage holds them, codes dequantized.
  __device__ __forceinline__ void fragment(uint32_t (&a)[4], const ::uint4* ts, int lane, int i) const {
    if constexpr (plain) {
      const ::uint4 q = ts[i * 32 + lane];
      a[0] = q.x, a[1] = q.y, a[2] = q.z, a[3] = q.w;
    } else {
      dequant<4 * Vecs, dequant_kind::integer, BF16>(a, words, i, bias_g, bias_g8, nullptr);
    }
  }
  __device__ __forceinline__ float scale_g() const { return __low2float(*reinterpret_cast<const __half2*>(&sc_g)); }
  __device__ __forceinline__ float scale_g8() const { return __low2float(*reinterpret_cast<const __half2*>(&sc_g8)); }
};

/// One block: Tiles tiles of 16 rows; its Warps warps split K into ranges of 128-wide chunks, each
/// streaming its tiles' codes, metadata and scales through a private ring of Stages stages
/// (cp.async). The activations of a chunk are loaded once and used for the Tiles tiles: with
/// XRows > 0 copied into the chunk's stage with the weights (rows 0 .. min(m, XRows) - 1), so that
/// their latency is hidden as the weight's is, else loaded by each lane from L2 at use.
/// T: fp16 or bf16 activations and output. Vecs = 1: int4 codes, 2: int8 codes, both scaled per
/// group; Vecs = 4: fp16 / bf16 values (T's type), fed to the mma as they are. M <= 16 (MTiles 1
/// or 2); larger M runs sparse24_wide_kernel. Splits > 1 (sm_90a): the Splits blocks (blockIdx.x,
/// 0 .. Splits - 1) are a cluster that splits K (the chunks in Splits ranges, each cut over the
/// warps as above); each block reduces its warps' sums into block 0's landing area (distributed
/// shared memory), and block 0 adds them in split order and stores. Dependent
/// (dependent_launch.cuh): launched as a programmatic dependent, the first stages' weights are
/// copied before the wait, x after it.
template <class T, int Vecs, int MTiles, int Tiles, int Stages, int Warps, int XRows, int Splits = 1, bool Dependent = false>
__global__ void __launch_bounds__(Warps * 32)
    sparse24_gemm_kernel(const T* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                         const ::uint4* __restrict__ metadata, const uint32_t* __restrict__ scales, int n, int chunks,
                         int chunks_per_group, int groups, T* __restrict__ y, int ldy) {
  if constexpr (Dependent) grid_dependents_launch();  // at the start (dependent_launch.cuh says why)
  static_assert(MTiles <= 2, "sparse24_gemm_kernel: M <= 16");
  constexpr bool bf16 = is_bf16<T>, plain = Vecs == 4;
  constexpr int tile_vecs = sparse24_tile_vecs<Vecs>, x_at = Tiles * tile_vecs, meta_at = 32 * Vecs;
  constexpr int stage_vecs = x_at + XRows * sparse24_x_row_vecs;
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int tile0 = blockIdx.x * Tiles;
  ::uint4* ring = smem + warp * Stages * stage_vecs;
  const int split = Splits > 1 ? static_cast<int>(blockIdx.y) : 0;
  const int k_begin = split * chunks / Splits, k_chunks = (split + 1) * chunks / Splits - k_begin;
  const int c_begin = k_begin + warp * k_chunks / Warps, c_end = k_begin + (warp + 1) * k_chunks / Warps;
  const int steps = c_end - c_begin;
  // Splits > 1: block 0's landing area (after the rings; its mbarrier after it), made known to the
  // cluster before any block sends to it (the matching cluster_wait is after the main loop).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (Splits > 1) {
    if (split == 0 && threadIdx.x == 0) {
      mbar_init(static_cast<unsigned>(__cvta_generic_to_shared(smem + Warps * Stages * stage_vecs) +
                                      sparse24_landing_bytes<MTiles, Tiles, Splits> - 16u),
                1);
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    cluster_arrive_relaxed();
  }
#endif
  // The blocks start their warps' ranges at different chunks (block % steps, wrapping): else every
  // block's warp w would read the same chunk of x at once (measured on an H100, 8192x8192 int4:
  // M=4 15.1 -> 14.2 us, M=8 15.6 -> 14.7; M = 1 and 16 unchanged).
  const int rot = steps > 0 ? static_cast<int>(blockIdx.x % static_cast<unsigned>(steps)) : 0;
  // The range's chunk at step s (0 .. steps - 1): s + rot, wrapped; a chunk's scale group.
  const auto local = [&](int s) { return s + rot < steps ? s + rot : s + rot - steps; };
  const auto group_of = [&](int c) { return chunks_per_group == 1 ? c : c / chunks_per_group; };
  // The copy issue, with its addresses made once (ncu at M = 16: integer work and branches, much of
  // it here, drew about half of the stall samples; this cut the issued instructions by a third and
  // the time by 1-3%): per lane one source per tile for the codes (+ the chunk), one for the
  // metadata (lanes 0..15, + the chunk) or the scales (lanes 16..19, + the group), one for x (rows
  // lane / 16, + 2 rows a copy); rows past m and the lanes with no metadata or scale copy are
  // predicated off rather than branched around.
  const unsigned ring_at = static_cast<unsigned>(__cvta_generic_to_shared(ring));
  const std::size_t tile_stride = (size_t)chunks * Vecs * 32;  // 16-byte vectors of a tile's codes
  const ::uint4* code_src = codes + ((size_t)tile0 * chunks + c_begin) * Vecs * 32 + lane;
  const bool aux = lane < 16 || (!plain && lane < 20);
  const bool meta_lane = lane < 16;
  const ::uint4* aux_src = meta_lane ? metadata + ((size_t)tile0 * chunks + c_begin) * 16 + lane
                                     : reinterpret_cast<const ::uint4*>(scales) + (size_t)tile0 * groups * 4 + (lane & 3);
  const std::size_t aux_tile_stride = meta_lane ? (size_t)chunks * 16 : (size_t)groups * 4;
  const unsigned aux_at = (meta_at + (meta_lane ? lane : 16 + (lane & 3))) * 16;
  const T* x_src = x + (size_t)(lane >> 4) * ldx + (size_t)c_begin * 128 + (lane & 15) * 8;
  const unsigned x_dst = (x_at + (lane >> 4) * sparse24_x_row_vecs + (lane & 15)) * 16;
  // Codes, metadata and scales are read once: evict_first in L2, so that x (read by every block)
  // stays (as gemm.cuh's M <= 16 kernel).
  const uint64_t read_once = l2_evict_first();
  // Step `step`'s copies: its weights (copy_w) and its x (copy_x), then a group committed (commit;
  // empty past the end).
  const auto issue = [&](int step, bool copy_w = true, bool copy_x = true, bool commit = true) {
    if (step < steps) {
      const unsigned stage = ring_at + (static_cast<unsigned>(step) % Stages) * stage_vecs * 16;
      const int lc = local(step);
      const std::size_t aux_step = meta_lane ? (size_t)lc * 16 : (size_t)group_of(c_begin + lc) * 4;
      if (copy_w) {
#pragma unroll
        for (int tl = 0; tl < Tiles; ++tl) {
          const unsigned ts = stage + tl * tile_vecs * 16;
          const ::uint4* src = code_src + tl * tile_stride + (size_t)lc * Vecs * 32;
#pragma unroll
          for (int v = 0; v < Vecs; ++v) cp_async16_hint_at(ts + (v * 32 + lane) * 16, src + v * 32, read_once);
          cp_async16_hint_if(ts + aux_at, aux_src + tl * aux_tile_stride + aux_step, aux, read_once);
        }
      }
      // Activation row r's 256 bytes of the chunk: lane = 16 (r % 2) + piece, two rows an instruction.
      const T* xs = x_src + (size_t)lc * 128;
      if (copy_x) {
#pragma unroll
        for (int r0 = 0; r0 < XRows; r0 += 2)
          cp_async16_if(stage + x_dst + r0 * sparse24_x_row_vecs * 16, xs + (size_t)r0 * ldx, r0 + (lane >> 4) < m);
      }
    }
    if (commit) cp_async_commit();
  };
  // Rows past m read row m - 1 (their outputs are never stored).
  const T* x_lane[MTiles];
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt) x_lane[mt] = x + (size_t)min(mt * 8 + g, m - 1) * ldx + 2 * t;
  // Staged activations: this lane's ldmatrix row in a stage for m tile mt and mma 0 (mma i: + 64 i
  // bytes), row mt * 8 + lane % 8 (rows past m read row m - 1), columns 8 (lane / 8) ...
  unsigned x_addr[MTiles];
#pragma unroll
  for (int mt = 0; mt < MTiles; ++mt)
    x_addr[mt] = (x_at + min(mt * 8 + (lane & 7), m - 1) * sparse24_x_row_vecs + (lane >> 3)) * 16;

  if constexpr (Dependent) {
    // The first stages' weights while the previous kernel finishes, then, once its writes are
    // visible, their x, one group a stage: the first group also holds every first-stage weight
    // (groups complete in order), so the loop's waits stay as they are.
#pragma unroll
    for (int s = 0; s < Stages - 1; ++s) issue(s, true, false, false);
    grid_dependency_wait();
#pragma unroll
    for (int s = 0; s < Stages - 1; ++s) issue(s, false, true);
  } else {
#pragma unroll
    for (int s = 0; s < Stages - 1; ++s) issue(s);
  }
  float acc[MTiles][Tiles][4] = {}, part[MTiles][Tiles][4] = {};
  // The activations from L2 (XRows = 0) are loaded before the wait for the stage, hiding their latency.
  for (int step = 0; step < steps; ++step) {
    const int c = c_begin + local(step);
    uint32_t xb[MTiles][4][4];  // [m tile][mma i][B register r]: k = 128 c + 32 i + 2t + 8r
    if constexpr (XRows == 0) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int mt = 0; mt < MTiles; ++mt)
#pragma unroll
          for (int r = 0; r < 4; ++r)
            xb[mt][i][r] = __ldg(reinterpret_cast<const uint32_t*>(x_lane[mt] + c * 128 + 32 * i + 8 * r));
    }
    cp_async_wait<Stages - 2>();
    __syncwarp();
    issue(step + Stages - 1);
    const ::uint4* stage = ring + (static_cast<unsigned>(step) % Stages) * stage_vecs;
    // The last step, or the next chunk in another group: scale the group's sums.
    const bool flush = step + 1 == steps || group_of(c_begin + local(step + 1)) != group_of(c);
    if constexpr (XRows > 0) {  // the staged activations: an mma's four B registers by one ldmatrix.x4
      const unsigned stage_at = ring_at + (static_cast<unsigned>(step) % Stages) * stage_vecs * 16;
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int mt = 0; mt < MTiles; ++mt) ldmatrix_x4(xb[mt][i], stage_at + x_addr[mt] + 64 * i);
    }
    // Tile by tile: a tile's codes are live only while it is multiplied.
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl) {
      sparse24_tile<Vecs, bf16> tile;
      tile.load(stage + tl * tile_vecs, lane);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        uint32_t a[4];
        tile.fragment(a, stage + tl * tile_vecs, lane, i);
#pragma unroll
        for (int mt = 0; mt < MTiles; ++mt) {
          if constexpr (plain) mma_sp_16832<bf16>(acc[mt][tl], a, xb[mt][i], tile.meta[i]);
          else mma_sp_16832<bf16>(part[mt][tl], a, xb[mt][i], tile.meta[i]);
        }
      }
      if (!plain && flush) flush_group(acc, part, tl, tile.scale_g(), tile.scale_g8());
    }
  }
  cp_async_wait<0>();

  // Reduce the warps' sums (gemm.cuh's reduce_warps) and store fp16 / bf16.
  static_assert(MTiles * Tiles * 4 * Warps * 32 * 4 <= Warps * Stages * stage_vecs * 16, "the reduction reuses the ring");
  const auto store = [&](int row, int col, float sum) {
    if constexpr (bf16) y[(size_t)col * ldy + row] = __float2bfloat16(sum);
    else y[(size_t)col * ldy + row] = __float2half(sum);
  };
  if constexpr (Splits == 1) {
    reduce_warps<MTiles, Tiles, Warps>(acc, reinterpret_cast<float*>(smem), warp, lane, tile0, n, m, store);
  } else {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    // Each block's sums ([column][row of the block]) to its split's slot of block 0's landing area:
    // block 0's own by plain stores, the others' by st.async counted on block 0's mbarrier (no
    // fenced cluster barrier: the small wgmma kernel's pulling version spent 9% of its stall
    // samples on those fences).
    constexpr int block_rows = Tiles * 16, land_floats = MTiles * 8 * block_rows;
    float* const landing = reinterpret_cast<float*>(smem + Warps * Stages * stage_vecs);
    const unsigned land = static_cast<unsigned>(__cvta_generic_to_shared(landing));
    const unsigned land_bar = land + static_cast<unsigned>(sparse24_landing_bytes<MTiles, Tiles, Splits> - 16u);
    const unsigned remote = map_to_rank(land + split * land_floats * 4u, 0), remote_bar = map_to_rank(land_bar, 0);
    cluster_wait();  // block 0's mbarrier is made
    reduce_warps<MTiles, Tiles, Warps>(acc, reinterpret_cast<float*>(smem), warp, lane, tile0, n, m,
                                       [&](int row, int col, float sum) {
                                         const int at = col * block_rows + row - tile0 * 16;
                                         if (split == 0) landing[at] = sum;
                                         else st_async_f32(remote + at * 4u, sum, remote_bar);
                                       });
    if (split == 0) {
      const int rows = min(block_rows, n - tile0 * 16);
      if (threadIdx.x == 0) mbar_expect_tx(land_bar, static_cast<unsigned>((Splits - 1) * rows * m * 4));
      __syncthreads();         // this block's own sums
      mbar_wait(land_bar, 0);  // the other blocks'
      for (int idx = threadIdx.x; idx < land_floats; idx += Warps * 32) {
        const int col = idx / block_rows, row = tile0 * 16 + idx % block_rows;
        if (row >= n || col >= m) continue;  // never written
        float sum = 0.0f;
#pragma unroll
        for (int s = 0; s < Splits; ++s) sum += landing[s * land_floats + idx];
        store(row, col, sum);
      }
    }
    // No block leaves before block 0 has had every block's sums (the st.async they sent are done).
    cluster_arrive_relaxed();
    cluster_wait();
#else
    (void)store;
    __trap();  // launched only where the device has sm_90a code
#endif
  }
}

/// Launches one instantiation (8 stages a warp; 4 with 4 tiles, int8 codes or plain values; fewer
/// if they do not fit shared memory). Codes: the activations staged with the weights when 3 stages
/// still fit. Splits > 1: K split over clusters of Splits blocks (sm_90a only). dependent: as a
/// programmatic dependent of the stream's previous kernel.
template <int MTiles, int Tiles, int Warps, int Splits = 1, class T, class Scheme>
void launch_sparse24(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy, cudaStream_t stream,
                     bool dependent) {
  constexpr int vecs = packed_sparse24_view<Scheme>::vecs;
  constexpr int want = (Tiles == 4 || vecs > 1) ? 4 : 8;
  constexpr int x_rows = vecs < 4 && sparse24_fit_stages<vecs, Tiles, want, Warps, 8 * MTiles>() >= 3 ? 8 * MTiles : 0;
  constexpr int stages = sparse24_fit_stages<vecs, Tiles, want, Warps, x_rows>();
  constexpr std::size_t bytes =
      sparse24_smem_bytes<vecs, Tiles, stages, Warps, x_rows> + sparse24_landing_bytes<MTiles, Tiles, Splits>;
  static_assert(bytes <= 227u * 1024u, "cuda::gemm_sparse24: a block shape whose rings do not fit shared memory");
  const auto run = [&](auto kernel) {
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    const int blocks = static_cast<int>(w.tiles()) / Tiles;
    launch_kernel(kernel, dim3(static_cast<unsigned>(blocks), Splits), dim3(Warps * 32), bytes, stream, dependent,
                  Splits > 1 ? unsigned(Splits) : 0u, x, m, ldx, w.codes, w.metadata, w.scales, static_cast<int>(w.rows),
                  static_cast<int>(w.chunks), static_cast<int>(w.chunks_per_group), static_cast<int>(w.groups), y, ldy);
  };
  if (dependent) run(sparse24_gemm_kernel<T, vecs, MTiles, Tiles, stages, Warps, x_rows, Splits, true>);
  else run(sparse24_gemm_kernel<T, vecs, MTiles, Tiles, stages, Warps, x_rows, Splits>);
}

/// Shared memory of the wide kernel: a block-wide ring of Stages stages, each the chunk's
/// activations (8 MTiles rows of 128, padded to 272 bytes), then the Groups warp groups' Tiles
/// tiles each (codes, metadata, scales: sparse24_tile_vecs).
template <int Vecs, int MTiles, int Tiles, int Groups, int Stages>
struct sparse24_wide_smem {
  static constexpr int x_vecs = MTiles * 8 * sparse24_x_row_vecs;
  static constexpr int group_vecs = Tiles * sparse24_tile_vecs<Vecs>;
  static constexpr int stage_vecs = x_vecs + Groups * group_vecs;
  static constexpr std::size_t bytes = 16u * Stages * stage_vecs;
};
/// The most stages, up to Want, whose ring fits Limit bytes.
template <int Vecs, int MTiles, int Tiles, int Groups, int Want, std::size_t Limit>
constexpr int sparse24_fit_wide_stages() {
  if constexpr (Want <= 2 || sparse24_wide_smem<Vecs, MTiles, Tiles, Groups, Want>::bytes <= Limit) return Want;
  else return sparse24_fit_wide_stages<Vecs, MTiles, Tiles, Groups, Want - 1, Limit>();
}

/// M = 17..64: gemm_wide_kernel's counterpart (gemm.cuh). Past M = 16 sparse24_gemm_kernel, whose
/// warps split K, reads all of x once for every block (at M = 64 with 2 tiles 4x the weights'
/// bytes again, from L2). Here a block's warps split N into Warps / WarpsM groups of Tiles tiles
/// (Warps / WarpsM x Tiles x 16 rows) and each group's WarpsM warps split x's MTiles 8-row tiles
/// (so the sums of a thread fit fewer registers); all share each 128-wide chunk of x, copied once
/// a block into the chunk's ring stage with the groups' codes, metadata and scales (each warp
/// copies Tiles / WarpsM of its group's tiles). The blocks split K (blockIdx.y; split_chunks
/// chunks each) and wide_store sums the splits in order. The B fragments of x (row g, k = 32 i +
/// 2t + 8r, r = 0..3) are the four 8 x 8 matrices of columns 32 i .. 32 i + 32 of 8 rows: one
/// ldmatrix.x4 each (272-byte rows: the 8 rows of a matrix fall in 8 different 16-byte bank
/// groups). Each A fragment (a tile's mma i) serves the warp's x tiles, XGroup of them in a row
/// (their mmas independent). Tiles past the matrix read the last tile (the warps stay in step for
/// the barriers; rows >= n are never stored).
template <class T, int Vecs, int MTiles, int Tiles, int Warps, int WarpsM, int Stages, int MinBlocks>
__global__ void __launch_bounds__(Warps * 32, MinBlocks)
    sparse24_wide_kernel(const T* __restrict__ x, int m, int ldx, const ::uint4* __restrict__ codes,
                         const ::uint4* __restrict__ metadata, const uint32_t* __restrict__ scales, int n, int tiles,
                         int chunks, int chunks_per_group, int groups, int split_chunks, float* __restrict__ partials,
                         unsigned* __restrict__ counters, T* __restrict__ y, int ldy) {
  static_assert(MTiles % WarpsM == 0 && Tiles % WarpsM == 0 && Warps % WarpsM == 0, "sparse24_wide_kernel: warp grid");
  constexpr bool bf16 = is_bf16<T>, plain = Vecs == 4;
  constexpr int MT = MTiles / WarpsM, Groups = Warps / WarpsM;  // x tiles a warp; warp groups along N
  using layout = sparse24_wide_smem<Vecs, MTiles, Tiles, Groups, Stages>;
  constexpr int tile_vecs = sparse24_tile_vecs<Vecs>, meta_at = 32 * Vecs, threads = Warps * 32;
  extern __shared__ ::uint4 smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wn = warp / WarpsM, wm = warp % WarpsM;
  const int c0 = blockIdx.y * split_chunks, steps = min(chunks - c0, split_chunks);
  const int tile0 = (blockIdx.x * Groups + wn) * Tiles;  // this warp group's first tile
  // The tiles this warp copies: wm, wm + WarpsM, ... of its group's.
  constexpr int copies = Tiles / WarpsM;
  const ::uint4 *code_ptr[copies], *meta_ptr[copies], *scale_ptr[copies];
#pragma unroll
  for (int j = 0; j < copies; ++j) {
    const std::size_t tile = static_cast<std::size_t>(min(tile0 + j * WarpsM + wm, tiles - 1));
    code_ptr[j] = codes + tile * chunks * Vecs * 32 + lane;
    meta_ptr[j] = metadata + tile * chunks * 16 + (lane & 15);
    scale_ptr[j] = plain ? nullptr : reinterpret_cast<const ::uint4*>(scales) + tile * groups * 4 + (lane & 3);
  }
  const uint64_t read_once = l2_evict_first();  // the weights: read once (see sparse24_gemm_kernel)
  const auto issue = [&](int step) {  // always commits a group (empty past the end)
    if (step < steps) {
      const int c = c0 + step;
      ::uint4* stage = smem + (static_cast<unsigned>(step) % Stages) * layout::stage_vecs;
      ::uint4* mine = stage + layout::x_vecs + wn * layout::group_vecs;
      const int group = plain ? 0 : c / chunks_per_group;
#pragma unroll
      for (int tl = 0; tl < copies; ++tl) {
        ::uint4* ts = mine + (tl * WarpsM + wm) * tile_vecs;
#pragma unroll
        for (int v = 0; v < Vecs; ++v)
          cp_async16_hint(ts + v * 32 + lane, code_ptr[tl] + ((size_t)c * Vecs + v) * 32, read_once);
        if (lane < 16) cp_async16_hint(ts + meta_at + lane, meta_ptr[tl] + (size_t)c * 16, read_once);
        else if (!plain && lane < 20)
          cp_async16_hint(ts + meta_at + 16 + (lane & 3), scale_ptr[tl] + (size_t)group * 4, read_once);
      }
      // Rows 0 .. m - 1 of x at k = 128 c .. + 128: 16 pieces of 16 bytes a row, one a thread.
#pragma unroll
      for (int i = 0; i < (MTiles * 8 * 16 + threads - 1) / threads; ++i) {
        const int idx = threadIdx.x + i * threads, r = idx >> 4, piece = idx & 15;
        if (r < m && r < MTiles * 8)
          cp_async16(stage + r * sparse24_x_row_vecs + piece, x + (size_t)r * ldx + (size_t)c * 128 + piece * 8);
      }
    }
    cp_async_commit();
  };
  // This lane's ldmatrix row in a stage, for x tile mt and mma 0 (mma i: + 64 i bytes): row
  // mt * 8 + lane % 8, columns 8 (lane / 8) ..; rows past m read row m - 1 (never stored).
  const unsigned ring = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  unsigned x_at[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
    x_at[mt] = (min((wm * MT + mt) * 8 + (lane & 7), m - 1) * sparse24_x_row_vecs + (lane >> 3)) * 16;

#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) issue(s);
  float acc[MT][Tiles][4] = {}, part[MT][Tiles][4] = {};
  for (int step = 0; step < steps; ++step) {
    cp_async_wait<Stages - 2>();
    __syncthreads();  // the stage's x came from every warp; and all are done with the stage refilled next
    issue(step + Stages - 1);
    const unsigned slot = static_cast<unsigned>(step) % Stages;
    const unsigned stage_x = ring + slot * layout::stage_vecs * 16;
    const ::uint4* mine = smem + slot * layout::stage_vecs + layout::x_vecs + wn * layout::group_vecs;
    const int c = c0 + step;
    const bool flush = step + 1 == steps || (c + 1) % chunks_per_group == 0;  // end of a group: scale its sums
    sparse24_tile<Vecs, bf16> tile[Tiles];
#pragma unroll
    for (int tl = 0; tl < Tiles; ++tl) tile[tl].load(mine + tl * tile_vecs, lane);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t a[Tiles][4];
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl) tile[tl].fragment(a[tl], mine + tl * tile_vecs, lane, i);
      constexpr int XGroup = MT % 4 == 0 ? 4 : MT % 3 == 0 ? 3 : MT;
#pragma unroll
      for (int m0 = 0; m0 < MT; m0 += XGroup) {
        uint32_t b[XGroup][4];
#pragma unroll
        for (int j = 0; j < XGroup; ++j) ldmatrix_x4(b[j], stage_x + x_at[m0 + j] + 64 * i);
#pragma unroll
        for (int j = 0; j < XGroup; ++j)
#pragma unroll
          for (int tl = 0; tl < Tiles; ++tl) {
            if constexpr (plain) mma_sp_16832<bf16>(acc[m0 + j][tl], a[tl], b[j], tile[tl].meta[i]);
            else mma_sp_16832<bf16>(part[m0 + j][tl], a[tl], b[j], tile[tl].meta[i]);
          }
      }
    }
    if (!plain && flush) {
#pragma unroll
      for (int tl = 0; tl < Tiles; ++tl) flush_group(acc, part, tl, tile[tl].scale_g(), tile[tl].scale_g8());
    }
  }
  cp_async_wait<0>();
  wide_store<MT, Tiles, Warps>(acc, partials, counters, warp, lane, tile0, n, m, y, ldy, wm * MT * 8);
}

/// The wide kernel's instantiation: 8 warps, a grid of 4 along N (2 tiles each: 128 rows a
/// block) by 2 along M (half of x's 8-row tiles each), so that a thread's sums fit 128 registers
/// and two blocks share an SM (16 warps; measured on an H100 against 8 warps of 2 tiles and all
/// of x, one block an SM: 8192x8192 M=64 int4 39.5 -> 38.3 us, fp16 values 48 -> 45.5 us); 4 stages
/// of int4 codes, 3 of int8 or plain values (fewer if they do not fit half an SM's shared memory).
/// The default split of K: about two blocks an SM for codes, one for plain values (whose blocks
/// stream 4x the bytes a chunk; measured at M = 32 and 64: int4 8192x8192 M=64 42.8 us with one,
/// 38.3 with two; fp16 values 43.7 with one, 48.0 with two).
template <class T, int Vecs, int MTiles>
struct sparse24_wide_config {
  static constexpr int warps = 8, warps_m = 2, tiles = 2, groups = warps / warps_m, blocks_per_sm = 2;
  static constexpr int split_blocks_per_sm = Vecs == 4 ? 1 : 2;
  static constexpr int rows_per_block = tiles * groups * 16;
  static constexpr int stages =
      sparse24_fit_wide_stages<Vecs, MTiles, tiles, groups, Vecs == 1 ? 4 : 3, 227u * 1024u / blocks_per_sm - 1024u>();
  using layout = sparse24_wide_smem<Vecs, MTiles, tiles, groups, stages>;
  static_assert(layout::bytes <= 227u * 1024u / blocks_per_sm - 1024u, "cuda::gemm_sparse24: a ring that does not fit");
  static constexpr auto kernel = sparse24_wide_kernel<T, Vecs, MTiles, tiles, warps, warps_m, stages, blocks_per_sm>;
};

/// M = 17..64: the wide kernel with 8 MTiles rows of x (MTiles = 4, 6 or 8); K split as
/// options.split_k says (wide_split: default about two blocks an SM, one for plain values).
template <class Scheme, class T>
void gemm_sparse24_wide(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                        cudaStream_t stream, const gemm_options& options) {
  constexpr int vecs = packed_sparse24_view<Scheme>::vecs;
  LOWBIT_CHECK(options.warps == 0 || options.warps == 8,
               "cuda::gemm_sparse24: m=" << m << " > 16 takes 8 warps a block (warps=" << options.warps << ")");
  constexpr int rows_per_block = sparse24_wide_config<T, vecs, 8>::rows_per_block;
  const int n = static_cast<int>(w.rows), chunks = static_cast<int>(w.chunks);
  const int blocks_n = (n + rows_per_block - 1) / rows_per_block, mtiles = (m + 15) / 16 * 2;
  const wide_split split("cuda::gemm_sparse24", chunks, blocks_n, sparse24_wide_config<T, vecs, 8>::split_blocks_per_sm,
                         std::size_t(rows_per_block) * mtiles * 8, options, stream);
  const auto run = [&](auto mtiles_c) {
    using config = sparse24_wide_config<T, vecs, decltype(mtiles_c)::value>;
    LOWBIT_CUDA_CHECK(cudaFuncSetAttribute(config::kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(config::layout::bytes)));
    const dim3 grid(blocks_n, split.splits);
    config::kernel<<<grid, config::warps * 32, config::layout::bytes, stream>>>(
        x, m, ldx, w.codes, w.metadata, w.scales, n, static_cast<int>(w.tiles()), chunks,
        static_cast<int>(w.chunks_per_group), static_cast<int>(w.groups), split.split_chunks, split.partials,
        split.counters, y, ldy);
  };
  if (mtiles == 4) run(std::integral_constant<int, 4>{});
  else if (mtiles == 6) run(std::integral_constant<int, 6>{});
  else run(std::integral_constant<int, 8>{});
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

/// M > 64: the tiled kernel (sparse24_gemm_large.cuh, included at the end of this header).
template <class Scheme, class T>
void gemm_sparse24_large(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                         cudaStream_t stream, const gemm_options& options);

/// M <= 16, integer codes, sm_90a: the wgmma.sp kernel (sparse24_gemm_wgmma_small.cuh, included at
/// the end of this header); false (nothing launched) where the device has no sm_90a code.
template <class Scheme, class T>
bool gemm_sparse24_wgmma_small(const T* x, int m, int ldx, const packed_sparse24_view<Scheme>& w, T* y, int ldy,
                               cudaStream_t stream, bool dependent);

/// The smallest M (int4 codes) whose default splits K over clusters of two 4-tile blocks where
/// 4-tile blocks alone would leave SMs idle (4096 x 14336: 64 blocks). The 2-tile blocks used
/// otherwise read x once per 32 rows (at M = 8 more bytes than the weights'): measured on an H100
/// (2026-11-27 23:10 UTC, 200 launches, the old default in the same call), 4096 x 14336 int4 fp16
/// M = 6 / 7 / 8 13.3 / 13.5 / 14.4 -> 12.8 us each, bf16 13.4 / 13.5 / 14.0 -> 13.1; M = 5 12.4 ->
/// 12.8 (fp16) and 12.5 -> 13.2 (bf16): not split.
inline constexpr int sparse24_split_from_m = 6;

/// M <= 16 on the mma.sp kernel (sparse24_gemm_kernel) with options.tiles_per_block,
/// options.warps (0: chosen from the shape) and options.split_k (2: K over clusters of 2 blocks,
/// with 4 tiles and 8 warps, sm_90a), as gemm_sparse24 documents them.
template <class Scheme, class T>
void gemm_sparse24_mma_small(const T* x, int mi, int lx, const packed_sparse24_view<Scheme>& w, T* y, int ly,
                             cudaStream_t stream, const gemm_options& options) {
  constexpr bool plain = packed_sparse24_view<Scheme>::plain, int8 = packed_sparse24_view<Scheme>::vecs == 2;
  const std::size_t m = static_cast<std::size_t>(mi);
  const int tiles = static_cast<int>(w.tiles());
  int per_block = options.tiles_per_block, warps = options.warps, splits = options.split_k == 2 ? 2 : 1;
  const int sms = (per_block == 0 || warps == 0) ? detail::sm_count() : 0;
  // Plain values stream 4x the bytes of int4 codes a chunk: their rings fit shared memory with 1
  // tile a block, or 2 with 8 warps.
  // Measured on an H100 (bench/cuda/bench_cuda_sparse24.cu): int4 runs best where the activations
  // are staged with the weights, which shared memory allows with 4 tiles and 8 warps (used when
  // that leaves >= 0.9 blocks an SM), and for M > 8 or int8 codes with 8 warps (int8, 4096x14336,
  // 2 tiles: M=1 18.5 -> 17.3 us, M=8 21.8 -> 18.2 against 16 warps); else as gemm() chooses.
  // K split over clusters of 2 four-tile blocks (sm_90a) where 4-tile blocks alone are too few
  // (int4 at M = sparse24_split_from_m .. 8): each block reads half of x's chunks for its 64 rows.
  if (per_block == 0) {
    if (!plain && tiles % 4 == 0 && 10 * (tiles / 4) >= 9 * sms) per_block = 4, warps = warps ? warps : 8;
    else if (!plain && !int8 && options.split_k == 0 && warps == 0 && mi >= sparse24_split_from_m && m <= 8 &&
             tiles % 4 == 0 && 10 * (tiles / 2) >= 9 * sms && tiles / 2 <= sms && wgmma_usable())
      per_block = 4, warps = 8, splits = 2;
    else per_block = tiles % 2 == 0 && !(plain && warps == 16) ? 2 : 1;
  }
  if (warps == 0)
    warps = (plain && per_block == 2) || (!plain && (m > 8 || int8)) ? 8
            : (tiles + per_block - 1) / per_block < 3 * sms / 2 ? 16 : 8;
  LOWBIT_CHECK(!plain || per_block == 1 || (per_block == 2 && warps == 8),
               "cuda::gemm_sparse24: plain values take 1 tile a block, or 2 with 8 warps (tiles_per_block=" << per_block
                                                                                                   << ", warps=" << warps << ")");
  LOWBIT_CHECK(warps == 8 || warps == 16, "cuda::gemm_sparse24: warps=" << warps << " must be 8 or 16");
  LOWBIT_CHECK(per_block == 1 || (per_block == 2 && tiles % 2 == 0) || (per_block == 4 && tiles % 4 == 0 && !plain),
               "cuda::gemm_sparse24: tiles_per_block=" << per_block << " must be 1, 2 with an even tile count (" << tiles
                                                       << "), or 4 with a tile count divisible by 4 (integer codes only)");
  LOWBIT_CHECK(splits == 1 || (splits == 2 && per_block == 4 && warps == 8 && wgmma_usable()),
               "cuda::gemm_sparse24: m=" << m << " split_k=" << options.split_k
                                         << ": K splits over 2 blocks only with tiles_per_block=4, warps=8, on sm_90a");
  // The m tiles (n8 columns of the mma) for m: 1 or 2.
  const auto by_m = [&](auto tiles_c, auto warps_c) {
    constexpr int tl = decltype(tiles_c)::value, wp = decltype(warps_c)::value;
    const bool dependent = options.dependent_launch;
    if constexpr (tl == 4 && wp == 8) {
      if (splits == 2) {
        if (m <= 8) detail::launch_sparse24<1, tl, wp, 2>(x, mi, lx, w, y, ly, stream, dependent);
        else detail::launch_sparse24<2, tl, wp, 2>(x, mi, lx, w, y, ly, stream, dependent);
        return;
      }
    }
    if (m <= 8) detail::launch_sparse24<1, tl, wp>(x, mi, lx, w, y, ly, stream, dependent);
    else detail::launch_sparse24<2, tl, wp>(x, mi, lx, w, y, ly, stream, dependent);
  };
  using c1 = std::integral_constant<int, 1>;
  using c2 = std::integral_constant<int, 2>;
  using c4 = std::integral_constant<int, 4>;
  using w8 = std::integral_constant<int, 8>;
  using w16 = std::integral_constant<int, 16>;
  if (per_block == 4) {
    if constexpr (!plain) {
      if (warps == 16) by_m(c4{}, w16{});
      else by_m(c4{}, w8{});
    }
  } else if (per_block == 2) {
    if (warps == 8) by_m(c2{}, w8{});
    else if constexpr (!plain) by_m(c2{}, w16{});
  } else {
    if (warps == 8) by_m(c1{}, w8{});
    else by_m(c1{}, w16{});
  }
  LOWBIT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace detail

/// y[m x N] = x[m x K] · Wᵀ with W 2:4 sparse (pack_sparse24: int4, int8 or plain kept values), fp16
/// or bf16 (T = __half or __nv_bfloat16) in and out, on `stream` (asynchronous). Integer codes are
/// dequantized to T's type; plain values must have been packed as T (sparse24_values).
/// Checked: 1 <= m <= 2^24; x 16-byte aligned with ldx >= K, ldx % 8 == 0 (the activations are
/// copied in 16-byte pieces); ldy >= N. K not a multiple of 128: x is first copied to a
/// zero-padded buffer (cudaMallocAsync, two async copies on `stream`). m <= 16: options.tiles_per_block 1, 2 or 4 dividing the
/// tile count (4: integer codes only), options.warps 8 or 16 (0: chosen from the shape as gemm()
/// does); m = 9..16 with integer codes, both 0 (the default), on sm_90a: the wgmma.sp kernel
/// where faster (sparse24_gemm_wgmma_small.cuh: from m = 9, or 11 for int8 where its blocks split
/// K, int4 from m = 2 where its 64-row blocks are 0.9 to 1 an SM; the scale folded into the
/// weights, one more rounding); options.split_k 2 with 4 tiles and 8
/// warps on sm_90a: K split over clusters of 2 blocks (the int4 default at m = 6..8 where 4-tile
/// blocks alone leave SMs idle; other split_k values are not used below m = 17). m > 16: the wide kernel (8 warps, 128 rows a block, x shared by the block; options.warps
/// 0 or 8, tiles_per_block not used), K split across blocks as options.split_k says, with
/// options.workspace as scratch or cudaMallocAsync per call (as cuda::gemm). m > 64: the tiled
/// kernel (sparse24_gemm_large.cuh; options.warps 0 or 8), K split only where its output blocks
/// are fewer than the SMs (or as options.split_k says). y must not overlap x. m <= 16 with
/// options.dependent_launch: launched as a programmatic dependent of the stream's previous kernel
/// (gemm_options; on sm_90 it copies its first weight stages while that kernel finishes).
template <class Scheme, class T>
void gemm_sparse24(const T* x, std::size_t m, std::size_t ldx, const packed_sparse24_view<Scheme>& w, T* y,
                   std::size_t ldy, cudaStream_t stream = nullptr, gemm_options options = {}) {
  static_assert(std::is_same<T, __half>::value || detail::is_bf16<T>,
                "cuda::gemm_sparse24: fp16 (__half) or bf16 (__nv_bfloat16) activations");
  constexpr bool plain = packed_sparse24_view<Scheme>::plain;
  LOWBIT_CHECK(m >= 1 && m <= (std::size_t(1) << 24), "cuda::gemm_sparse24: m=" << m << " must be in [1, 2^24]");
  LOWBIT_CHECK(w.codes != nullptr, "cuda::gemm_sparse24: the packed weights are empty");
  LOWBIT_CHECK(!plain || w.bf16_values == detail::is_bf16<T>,
               "cuda::gemm_sparse24: the kept values were packed as " << (w.bf16_values ? "bf16" : "fp16") << ", the activations are "
                                                                      << (detail::is_bf16<T> ? "bf16" : "fp16")
                                                                      << " (pack_sparse24's sparse24_values must match them)");
  LOWBIT_CHECK(ldx >= w.cols && ldx % 8 == 0,
               "cuda::gemm_sparse24: ldx=" << ldx << " must be >= K=" << w.cols << " and a multiple of 8");
  LOWBIT_CHECK(reinterpret_cast<std::uintptr_t>(x) % 16 == 0, "cuda::gemm_sparse24: x must be 16-byte aligned");
  LOWBIT_CHECK(ldy >= w.rows, "cuda::gemm_sparse24: ldy=" << ldy << " must be >= N=" << w.rows);
  // K not a multiple of 128: the kernels read whole chunks of x, so x goes through a zero-padded
  // copy (stream-ordered scratch; two copies of m x K, small beside the weights).
  const std::size_t padded_k = w.chunks * sparse24_chunk_cols;
  void* scratch = nullptr;
  if (padded_k != w.cols) {
    LOWBIT_CUDA_CHECK(cudaMallocAsync(&scratch, m * padded_k * sizeof(T), stream));
  }
  struct give_back {  // the scratch, in stream order, also on a throw
    void* p;
    cudaStream_t s;
    ~give_back() { if (p) cudaFreeAsync(p, s); }
  } scratch_owner{scratch, stream};
  if (scratch) {
    const std::size_t row = padded_k * sizeof(T), used = w.cols * sizeof(T);
    LOWBIT_CUDA_CHECK(cudaMemset2DAsync(static_cast<char*>(scratch) + used, row, 0, row - used, m, stream));
    LOWBIT_CUDA_CHECK(cudaMemcpy2DAsync(scratch, row, x, ldx * sizeof(T), used, m, cudaMemcpyDeviceToDevice, stream));
    x = static_cast<const T*>(scratch);
    ldx = padded_k;
  }
  const int mi = static_cast<int>(m), lx = static_cast<int>(ldx), ly = static_cast<int>(ldy);
  if (m > 64) {
    detail::gemm_sparse24_large(x, mi, lx, w, y, ly, stream, options);
    return;
  }
  if (m > 16) {
    detail::gemm_sparse24_wide(x, mi, lx, w, y, ly, stream, options);
    return;
  }
  // Integer codes, the default block shape, sm_90a: the wgmma.sp kernel where it was measured faster
  // (M = 9..16, int8 with K split 11..16, int4 M = 2..8 where not split and about one block an SM:
  // sparse24_gemm_wgmma_small.cuh); else the mma.sp kernel.
  if (!plain && options.tiles_per_block == 0 && options.warps == 0 &&
      detail::gemm_sparse24_wgmma_small(x, mi, lx, w, y, ly, stream, options.dependent_launch))
    return;
  detail::gemm_sparse24_mma_small(x, mi, lx, w, y, ly, stream, options);
}

}  // namespace cuda
}  // namespace lowbit

#include "sparse24_gemm_large.cuh"
#include "sparse24_gemm_wgmma_small.cuh"
