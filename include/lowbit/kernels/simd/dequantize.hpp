/// \file
/// \brief Dequantization kernels for every arch tag: rows of a quantized_view to fp32 or bf16,
/// bit-identical to reference::dequantize_rows.
///
/// One driver, written over xsimd batches, walks each row block by block (decode.hpp says what a
/// block is for each format), keeps track of the current group and asks the decoder for
/// (decode(code) - decode(zero)) * scale per batch. A batch that lies in one group uses the group's
/// prepared step (for 4-bit formats, a pre-scaled register table); a batch that straddles groups
/// (group sizes that are not a multiple of the batch width) gathers its lanes' scales one by one.
/// The end of a row (a partial block) is decoded from a zero-padded copy and stored partially, so
/// no byte outside the row is read and no element outside [0, cols) is written.
#pragma once

#include "../../core/config.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../arch/dispatch.hpp"
#include "../../core/aligned.hpp"
#include "../../core/half.hpp"
#include "../../layout/quantized_matrix.hpp"
#include "decode.hpp"
#include "ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {

/// How a kernel writes its output.
enum class store_policy {
  automatic,  ///< streaming for outputs larger than streaming_threshold_bytes, normal otherwise
  normal,     ///< ordinary stores: the output stays in cache for whoever reads it next
  streaming,  ///< non-temporal stores (rows aligned to the vector width; others use ordinary
              ///< stores): no read-for-ownership, nothing evicted; for outputs that exceed the caches
};

/// Output size above which store_policy::automatic streams (a few times a core's L2 and a good
/// share of an L3 slice: a consumer would not find the data in cache anyway).
inline constexpr std::size_t streaming_threshold_bytes = std::size_t(8) << 20;

/// Resolves automatic for an output of `bytes` bytes.
constexpr store_policy resolve_store_policy(store_policy policy, std::size_t bytes) noexcept {
  return policy != store_policy::automatic ? policy
                                           : (bytes > streaming_threshold_bytes ? store_policy::streaming
                                                                                : store_policy::normal);
}

namespace simd {
namespace detail {

/// A scale as float on an arch path: scale_traits' conversion, or fp16 through F16C where the path has it (exact, as the scalar
/// conversion; a signalling NaN comes out quiet, which the multiply that follows does anyway).
template <class Tag, class Scale>
LOWBIT_ALWAYS_INLINE float scale_value(const Scale& s) noexcept {
#if defined(LOWBIT_COMPILED_AVX2)
  if constexpr (std::is_same<Scale, fp16>::value && Tag::level >= isa::avx2) {
    return _cvtsh_ss(s.bits);
  }
#endif
  return scale_traits<Scale>::to_float(s);
}

/// Scalar path (every platform): a decode table; 4-bit groups use a pre-scaled 16-entry table.
template <class Scheme, class Out>
void dequantize_rows_scalar(const quantized_view<Scheme>& w, std::size_t row_begin, std::size_t row_end, Out* out,
                            std::size_t ld_out) noexcept {
  using format = typename Scheme::format;
  constexpr int bits = format_traits<format>::bits;
  constexpr bool has_zero = Scheme::has_zero;
  const float* table = simd::detail::decode_table<format>();
  const std::size_t cols = w.cols(), group_size = w.group_size(), groups = w.groups_per_row();
  for (std::size_t r = row_begin; r < row_end; ++r) {
    const uint8_t* codes = w.row_codes(r);
    const auto* scales = w.row_scales(r);
    const uint8_t* zeros = w.row_zeros(r);
    Out* dst = out + (r - row_begin) * ld_out;
    for (std::size_t g = 0; g < groups; ++g) {
      const float scale = scale_value<arch::scalar_tag>(scales[g]);
      const float zero = has_zero ? table[zeros[g]] : 0.0f;
      const std::size_t k0 = g * group_size, k1 = std::min(cols, k0 + group_size);
      if constexpr (bits == 4) {
        float scaled[16];
        for (int c = 0; c < 16; ++c) scaled[c] = has_zero ? (table[c] - zero) * scale : table[c] * scale;
        for (std::size_t k = k0; k < k1; ++k) dst[k] = Out(scaled[(codes[k >> 1] >> ((k & 1) * 4)) & 0xF]);
      } else if constexpr (bits == 8) {
        for (std::size_t k = k0; k < k1; ++k)
          dst[k] = Out(has_zero ? (table[codes[k]] - zero) * scale : table[codes[k]] * scale);
      } else {
        for (std::size_t k = k0; k < k1; ++k) {
          const float v = table[get_packed_code(codes, k, bits)];
          dst[k] = Out(has_zero ? (v - zero) * scale : v * scale);
        }
      }
    }
  }
}

#if defined(LOWBIT_COMPILED_SSE42)

/// fp32 -> bf16 bits exactly as lowbit::bf16(float): round to nearest even, NaN made quiet.
/// Returns lanes holding values in [0, 65535].
template <class Tag>
LOWBIT_ALWAYS_INLINE typename ops<Tag>::i32 bf16_bits(const typename ops<Tag>::f32& v) noexcept {
  using O = ops<Tag>;
  using i32 = typename O::i32;
  const i32 x = O::as_i32(v);
  const i32 high = (x >> 16) & i32(0xFFFF);  // arithmetic shift: mask the sign copies away
  const i32 rounded = ((x + i32(0x7FFF) + (high & i32(1))) >> 16) & i32(0xFFFF);
  const auto is_nan = (x & i32(0x7FFFFFFF)) > i32(0x7F800000);
  return O::select(is_nan, high | i32(0x40), rounded);
}

template <class Tag>
LOWBIT_ALWAYS_INLINE void store_batch(float* p, const typename ops<Tag>::f32& v, bool streaming) noexcept {
  if (streaming) {
    ops<Tag>::stream(p, v);
  } else {
    v.store_unaligned(p);
  }
}
template <class Tag>
LOWBIT_ALWAYS_INLINE void store_batch(bf16* p, const typename ops<Tag>::f32& v, bool streaming) noexcept {
  ops<Tag>::store_u16(reinterpret_cast<uint16_t*>(p), bf16_bits<Tag>(v), streaming);
}
/// The first n (< lanes) elements of a batch.
template <class Tag, class Out>
void store_partial(Out* p, const typename ops<Tag>::f32& v, std::size_t n) noexcept {
  alignas(64) Out buffer[ops<Tag>::lanes];
  store_batch<Tag>(buffer, v, false);
  std::memcpy(static_cast<void*>(p), buffer, n * sizeof(Out));
}

/// Where a row's walk stands: the row's scales and zero points, the group of the last batch
/// (index, unclamped end) and its prepared step.
template <class Scheme, class Decoder>
struct group_cursor {
  const typename Scheme::scale_type* scales;
  const uint8_t* zeros;
  std::size_t group_size;
  std::size_t index = 0, end = 0;
  typename Decoder::group step;
};

template <class Tag, class Scheme, class Decoder>
LOWBIT_ALWAYS_INLINE void enter_group(const Decoder& dec, std::size_t g, group_cursor<Scheme, Decoder>& cursor) noexcept {
  using format = typename Scheme::format;
  cursor.index = g;
  cursor.end = (g + 1) * cursor.group_size;
  cursor.step = dec.template prepare<Scheme::has_zero>(
      scale_value<Tag>(cursor.scales[g]), Scheme::has_zero ? format_traits<format>::decode(cursor.zeros[g]) : 0.0f);
}

/// A batch whose lanes belong to several groups: per-lane scales and zeros, same arithmetic.
template <class Tag, class Scheme, std::size_t J, class Decoder>
LOWBIT_ALWAYS_INLINE typename ops<Tag>::f32 straddling_batch(const Decoder& dec, const typename Decoder::unpacked& u,
                                                             const quantized_view<Scheme>& w, std::size_t r,
                                                             std::size_t p, std::size_t end) noexcept {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  alignas(64) float scale[O::lanes] = {};
  alignas(64) float zero[O::lanes] = {};
  const auto* scales = w.row_scales(r);
  const uint8_t* zeros = w.row_zeros(r);
  for (std::size_t i = 0; p + i < end; ++i) {
    const std::size_t g = (p + i) / w.group_size();
    scale[i] = scale_value<Tag>(scales[g]);
    if constexpr (Scheme::has_zero) zero[i] = format_traits<typename Scheme::format>::decode(zeros[g]);
  }
  const f32 v = dec.template decode<J>(u);
  if constexpr (Scheme::has_zero) {
    return (v - f32::load_aligned(zero)) * f32::load_aligned(scale);
  } else {
    return v * f32::load_aligned(scale);
  }
}

/// Any block, any group size: elements [k, min(k + block, cols)) from the codes at `codes` (the
/// block's own bytes, or a zero-padded copy of them), each batch with its group's step or, when it
/// straddles groups, per-lane scales; ordinary stores (partial at the end of the row). The slow
/// path: odd group sizes and the ends of rows. Kept out of line so the fast loop stays small.
template <class Tag, class Scheme, class Out, class Decoder>
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
group_cursor<Scheme, Decoder> general_block(const Decoder& dec, const uint8_t* codes, const quantized_view<Scheme>& w,
                                            std::size_t r, std::size_t k, Out* dst,
                                            group_cursor<Scheme, Decoder> cursor) noexcept {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  constexpr std::size_t W = O::lanes;
  const std::size_t cols = w.cols();
  typename Decoder::unpacked u;
  dec.unpack(codes, u);
  simd::detail::static_for<Decoder::block / W>([&](auto J) {
    const std::size_t p = k + J * W;
    if (p >= cols) return;
    const std::size_t end = std::min(p + W, cols);
    if (p >= cursor.end) enter_group<Tag>(dec, p == cursor.end ? cursor.index + 1 : p / cursor.group_size, cursor);
    const f32 v = end <= cursor.end ? dec.template apply<decltype(J)::value, Scheme::has_zero>(cursor.step, u)
                                    : straddling_batch<Tag, Scheme, decltype(J)::value>(dec, u, w, r, p, end);
    if (end - p == W) {
      store_batch<Tag>(dst + p, v, false);
    } else {
      store_partial<Tag>(dst + p, v, end - p);
    }
  });
  return cursor;  // by value: the caller's cursor stays in registers
}

/// One row. Full blocks take one of two fast paths: the whole block in the current group (one
/// prepared step for every batch), or, when the group size is a multiple of the batch width,
/// batches that move to the next group in order. Everything else goes through general_block.
template <class Tag, class Scheme, class Out, bool Stream, class Decoder>
void dequantize_row(const Decoder& dec, const quantized_view<Scheme>& w, std::size_t r, Out* dst) noexcept {
  using O = ops<Tag>;
  using unpacked = typename Decoder::unpacked;
  constexpr std::size_t W = O::lanes, B = Decoder::block;
  constexpr int bits = format_traits<typename Scheme::format>::bits;
  constexpr bool has_zero = Scheme::has_zero;
  const std::size_t cols = w.cols(), group_size = w.group_size(), row_bytes = w.row_bytes();
  const bool aligned_groups = group_size % W == 0;
  const uint8_t* codes = w.row_codes(r);

  group_cursor<Scheme, Decoder> cursor{w.row_scales(r), w.row_zeros(r), group_size, 0, 0, {}};
  enter_group<Tag>(dec, 0, cursor);
  std::size_t k = 0;
  // Full blocks whose reads stay inside the row.
  const std::size_t full_end =
      row_bytes >= Decoder::read_bytes ? std::min(cols / B, (row_bytes - Decoder::read_bytes) * 8 / bits / B + 1) * B : 0;
  for (; k < full_end; k += B) {
    const uint8_t* block_codes = codes + k * bits / 8;
    if (k >= cursor.end) enter_group<Tag>(dec, k == cursor.end ? cursor.index + 1 : k / group_size, cursor);
    if (k + B <= cursor.end) {
      unpacked u;
      dec.unpack(block_codes, u);
      simd::detail::static_for<B / W>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
        store_batch<Tag>(dst + k + J * W, dec.template apply<decltype(J)::value, has_zero>(cursor.step, u), Stream);
      });
    } else if (aligned_groups) {
      unpacked u;
      dec.unpack(block_codes, u);
      simd::detail::static_for<B / W>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
        const std::size_t p = k + J * W;
        if (p >= cursor.end) enter_group<Tag>(dec, cursor.index + 1, cursor);
        store_batch<Tag>(dst + p, dec.template apply<decltype(J)::value, has_zero>(cursor.step, u), Stream);
      });
    } else {
      cursor = general_block<Tag>(dec, block_codes, w, r, k, dst, cursor);
    }
  }
  // The rest of the row from a zero-padded copy of its last bytes.
  for (; k < cols; k += B) {
    alignas(64) uint8_t padded[Decoder::read_bytes] = {};
    const std::size_t offset = k * bits / 8;
    std::memcpy(padded, codes + offset, std::min(Decoder::read_bytes, row_bytes - offset));
    cursor = general_block<Tag>(dec, padded, w, r, k, dst, cursor);
  }
}

template <class Tag, class Scheme, class Out>
void dequantize_rows_simd(const quantized_view<Scheme>& w, std::size_t row_begin, std::size_t row_end, Out* out,
                          std::size_t ld_out, bool streaming) noexcept {
  using D = decoder<Tag, typename Scheme::format>;
  constexpr std::size_t W = ops<Tag>::lanes;
  constexpr int bits = format_traits<typename Scheme::format>::bits;
  static_assert(D::block % W == 0 && D::block * bits % 8 == 0, "a block is whole batches and whole bytes");
  const D dec;
  bool streamed = false;
  for (std::size_t r = row_begin; r < row_end; ++r) {
    Out* dst = out + (r - row_begin) * ld_out;
    if (streaming && is_aligned(dst, W * sizeof(Out))) {
      streamed = true;
      dequantize_row<Tag, Scheme, Out, true>(dec, w, r, dst);
    } else {
      dequantize_row<Tag, Scheme, Out, false>(dec, w, r, dst);
    }
  }
  if (streamed) _mm_sfence();  // order the non-temporal stores before whatever signals completion
}

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace detail
}  // namespace simd

/// Kernel entry (unchecked): dequantizes rows [row_begin, row_end) of w into out, row r at
/// out + (r - row_begin) * ld_out, with the arch path of tag Arch, bit-identical to
/// reference::dequantize_rows. Out is float or bf16.
///
/// Preconditions (not checked): w.validate() passes; row_begin <= row_end <= w.rows();
/// ld_out >= w.cols(); out holds (row_end - row_begin - 1) * ld_out + w.cols() elements (none
/// when the range is empty); the CPU runs Arch (isa_supported(Arch::level)); the floating-point
/// environment is the default one (no flush-to-zero / denormals-are-zero: the minifloat decoders
/// and the reference both rely on subnormal arithmetic). Elements of out outside [0, cols) of each
/// row are not touched. With store_policy::streaming (or automatic resolving to it) the stores
/// are non-temporal and the kernel ends with a store fence.
template <class Arch, class Scheme, class Out>
void dequantize_rows(const quantized_view<Scheme>& w, std::size_t row_begin, std::size_t row_end, Out* out,
                     std::size_t ld_out, store_policy policy = store_policy::normal) noexcept {
  static_assert(std::is_same<Out, float>::value || std::is_same<Out, bf16>::value, "Out is float or bf16");
  static_assert(arch::is_tag<Arch>::value, "Arch is one of lowbit::arch's tags compiled here");
  if (row_begin >= row_end) return;
  if constexpr (std::is_same<Arch, arch::scalar_tag>::value) {
    (void)policy;
    simd::detail::dequantize_rows_scalar(w, row_begin, row_end, out, ld_out);
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    const store_policy resolved = resolve_store_policy(policy, (row_end - row_begin) * w.cols() * sizeof(Out));
    simd::detail::dequantize_rows_simd<Arch>(w, row_begin, row_end, out, ld_out, resolved == store_policy::streaming);
#endif
  }
}

}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
