/// \file
/// \brief ggml's block layouts (Q4_0, Q4_1, Q8_0, IQ4_NL, MXFP4): sizes, import into lowbit
/// matrices, export from them, and dequantization to float as ggml does it.
///
/// A ggml block keeps its scale beside its 32 codes, and orders the nibbles differently (byte j
/// holds element j low and element j + 16 high; lowbit: element 2j low, 2j + 1 high), so import
/// is one repack into lowbit's reference layout (then pack() for the kernels), never a requantization.
/// Q4_1's value d * q + m has no zero point in lowbit's sense (m / d is not a code), so it is only
/// dequantized. Facts and sources: shared FORMATS.md, ggml-org/ggml src/ggml-common.h.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../core/rounding.hpp"
#include "../layout/quantized_matrix.hpp"
#include "../scheme.hpp"
#include "bytes.hpp"

namespace lowbit {
namespace interop {

/// ggml's type ids as GGUF files store them (enum ggml_type).
enum class ggml_type : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
  iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23,
  i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30, tq1_0 = 34, tq2_0 = 35, mxfp4 = 39
};

/// Elements per block and bytes per block of a ggml type (gguf's GGML_QUANT_SIZES).
struct ggml_type_info {
  ggml_type type;
  const char* name;
  uint32_t block_elements;
  uint32_t block_bytes;
};

/// The entry for a type id, or null if lowbit does not know its size (such a tensor cannot be read).
inline const ggml_type_info* ggml_info(uint32_t id) noexcept {
  static const ggml_type_info table[] = {
      {ggml_type::f32, "F32", 1, 4},          {ggml_type::f16, "F16", 1, 2},
      {ggml_type::q4_0, "Q4_0", 32, 18},      {ggml_type::q4_1, "Q4_1", 32, 20},
      {ggml_type::q5_0, "Q5_0", 32, 22},      {ggml_type::q5_1, "Q5_1", 32, 24},
      {ggml_type::q8_0, "Q8_0", 32, 34},      {ggml_type::q8_1, "Q8_1", 32, 40},
      {ggml_type::q2_k, "Q2_K", 256, 84},     {ggml_type::q3_k, "Q3_K", 256, 110},
      {ggml_type::q4_k, "Q4_K", 256, 144},    {ggml_type::q5_k, "Q5_K", 256, 176},
      {ggml_type::q6_k, "Q6_K", 256, 210},    {ggml_type::q8_k, "Q8_K", 256, 292},
      {ggml_type::iq2_xxs, "IQ2_XXS", 256, 66}, {ggml_type::iq2_xs, "IQ2_XS", 256, 74},
      {ggml_type::iq3_xxs, "IQ3_XXS", 256, 98}, {ggml_type::iq1_s, "IQ1_S", 256, 50},
      {ggml_type::iq4_nl, "IQ4_NL", 32, 18},  {ggml_type::iq3_s, "IQ3_S", 256, 110},
      {ggml_type::iq2_s, "IQ2_S", 256, 82},   {ggml_type::iq4_xs, "IQ4_XS", 256, 136},
      {ggml_type::i8, "I8", 1, 1},            {ggml_type::i16, "I16", 1, 2},
      {ggml_type::i32, "I32", 1, 4},          {ggml_type::i64, "I64", 1, 8},
      {ggml_type::f64, "F64", 1, 8},          {ggml_type::iq1_m, "IQ1_M", 256, 56},
      {ggml_type::bf16, "BF16", 1, 2},        {ggml_type::tq1_0, "TQ1_0", 256, 54},
      {ggml_type::tq2_0, "TQ2_0", 256, 66},   {ggml_type::mxfp4, "MXFP4", 32, 17}};
  for (const auto& info : table)
    if (static_cast<uint32_t>(info.type) == id) return &info;
  return nullptr;
}

inline const ggml_type_info& ggml_info(ggml_type type) {
  const ggml_type_info* info = ggml_info(static_cast<uint32_t>(type));
  LOWBIT_CHECK(info != nullptr, "ggml: unknown type id " << static_cast<uint32_t>(type));
  return *info;
}

/// Bytes of `rows` rows of `cols` elements of `type`; cols must be a whole number of blocks.
inline std::size_t ggml_bytes(ggml_type type, std::size_t rows, std::size_t cols) {
  const ggml_type_info& info = ggml_info(type);
  LOWBIT_CHECK(cols % info.block_elements == 0,
               "ggml " << info.name << ": a row of " << cols << " elements is not a whole number of " << info.block_elements << "-element blocks");
  return checked_mul(checked_mul(rows, cols / info.block_elements, "ggml block count"), info.block_bytes, "ggml tensor bytes");
}

// On-disk blocks (ggml-common.h), read by memcpy so that file bytes need no alignment. Scales
// are little-endian fp16 bits.
struct block_q4_0 { uint16_t d; uint8_t qs[16]; };
struct block_q4_1 { uint16_t d; uint16_t m; uint8_t qs[16]; };
struct block_q8_0 { uint16_t d; int8_t qs[32]; };
struct block_iq4_nl { uint16_t d; uint8_t qs[16]; };
struct block_mxfp4 { uint8_t e; uint8_t qs[16]; };
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 is 18 bytes on disk");
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 is 20 bytes on disk");
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 is 34 bytes on disk");
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl is 18 bytes on disk");
static_assert(sizeof(block_mxfp4) == 17, "block_mxfp4 is 17 bytes on disk");

/// The lowbit scheme each importable block type becomes (group size 32).
namespace ggml_scheme {
using q4_0 = scheme<int4, fp16>;     ///< (q - 8) * d: the int4 code is q ^ 8
using q8_0 = scheme<int8, fp16>;     ///< q * d
using iq4_nl = scheme<lowbit::iq4_nl, fp16>;  ///< kvalues_iq4nl[q] * d: the same table and codes
using mxfp4 = mx::fp4;               ///< E2M1 code * 2^(e - 127): ggml's doubled values times 2^(e - 128)
}  // namespace ggml_scheme

namespace detail {

template <class Scheme> struct ggml_block_of;
template <> struct ggml_block_of<ggml_scheme::q4_0> { using type = block_q4_0; static constexpr ggml_type id = ggml_type::q4_0; };
template <> struct ggml_block_of<ggml_scheme::q8_0> { using type = block_q8_0; static constexpr ggml_type id = ggml_type::q8_0; };
template <> struct ggml_block_of<ggml_scheme::iq4_nl> { using type = block_iq4_nl; static constexpr ggml_type id = ggml_type::iq4_nl; };
template <> struct ggml_block_of<ggml_scheme::mxfp4> { using type = block_mxfp4; static constexpr ggml_type id = ggml_type::mxfp4; };

/// Element i (0..31) of a 4-bit block: the low nibbles hold 0..15, the high ones 16..31.
inline uint8_t ggml_nibble(const uint8_t* qs, std::size_t i) noexcept {
  return i < 16 ? (qs[i] & 0x0F) : (qs[i - 16] >> 4);
}

// Per block type: its scale as lowbit stores it, element i's lowbit code, and the reverse.
inline fp16 block_scale(const block_q4_0& b) noexcept { return fp16::from_bits(b.d); }
inline fp16 block_scale(const block_q8_0& b) noexcept { return fp16::from_bits(b.d); }
inline fp16 block_scale(const block_iq4_nl& b) noexcept { return fp16::from_bits(b.d); }
inline e8m0 block_scale(const block_mxfp4& b) noexcept { return e8m0::from_bits(b.e); }
inline uint8_t block_code(const block_q4_0& b, std::size_t i) noexcept { return static_cast<uint8_t>(ggml_nibble(b.qs, i) ^ 8); }
inline uint8_t block_code(const block_q8_0& b, std::size_t i) noexcept { return static_cast<uint8_t>(b.qs[i]); }
inline uint8_t block_code(const block_iq4_nl& b, std::size_t i) noexcept { return ggml_nibble(b.qs, i); }
inline uint8_t block_code(const block_mxfp4& b, std::size_t i) noexcept { return ggml_nibble(b.qs, i); }

inline void set_nibble(uint8_t* qs, std::size_t i, uint8_t code) noexcept {
  if (i < 16) qs[i] = static_cast<uint8_t>((qs[i] & 0xF0) | code);
  else qs[i - 16] = static_cast<uint8_t>((qs[i - 16] & 0x0F) | (code << 4));
}
inline void set_block(block_q4_0& b, fp16 s, std::size_t i, uint8_t code) noexcept { b.d = s.bits; set_nibble(b.qs, i, static_cast<uint8_t>(code ^ 8)); }
inline void set_block(block_q8_0& b, fp16 s, std::size_t i, uint8_t code) noexcept { b.d = s.bits; b.qs[i] = static_cast<int8_t>(code); }
inline void set_block(block_iq4_nl& b, fp16 s, std::size_t i, uint8_t code) noexcept { b.d = s.bits; set_nibble(b.qs, i, code); }
inline void set_block(block_mxfp4& b, e8m0 s, std::size_t i, uint8_t code) noexcept { b.e = s.storage; set_nibble(b.qs, i, code); }

}  // namespace detail

/// Imports a rows x cols tensor of ggml blocks (`bytes` of them, checked) as a lowbit matrix of
/// the matching scheme (ggml_scheme::q4_0, q8_0, iq4_nl or mxfp4), group size 32. Scales are
/// checked (finite; MXFP4's E8M0 255, NaN in OCP MX, is refused).
template <class Scheme>
quantized_matrix<Scheme> import_ggml(const uint8_t* blocks, std::size_t bytes, std::size_t rows, std::size_t cols) {
  using block = typename detail::ggml_block_of<Scheme>::type;
  const ggml_type type = detail::ggml_block_of<Scheme>::id;
  const std::size_t need = ggml_bytes(type, rows, cols);
  LOWBIT_CHECK(bytes == need, "ggml " << ggml_info(type).name << ": " << bytes << " bytes for a " << rows << " x " << cols
                                      << " tensor that needs " << need);
  LOWBIT_CHECK(blocks != nullptr || need == 0, "ggml " << ggml_info(type).name << ": data is null");
  quantized_matrix<Scheme> m(rows, cols, 32);
  const std::size_t per_row = cols / 32;
  for (std::size_t r = 0; r < rows; ++r) {
    uint8_t* row = m.codes() + r * m.row_bytes();  // whole bytes: lowbit's row is 32 codes per block
    for (std::size_t g = 0; g < per_row; ++g) {
      block b;
      std::memcpy(&b, blocks + (r * per_row + g) * sizeof(block), sizeof(block));
      m.scale(r, g) = detail::block_scale(b);
      if constexpr (Scheme::bits == 4) {
        for (std::size_t j = 0; j < 16; ++j)
          row[g * 16 + j] = static_cast<uint8_t>(detail::block_code(b, 2 * j) | (detail::block_code(b, 2 * j + 1) << 4));
      } else {
        for (std::size_t i = 0; i < 32; ++i) row[g * 32 + i] = detail::block_code(b, i);
      }
    }
  }
  m.view().validate_contents();
  return m;
}

/// Exports a lowbit matrix of a ggml scheme (group size 32, cols a multiple of 32) as ggml blocks.
template <class Scheme>
std::vector<uint8_t> export_ggml(const quantized_view<Scheme>& m) {
  using block = typename detail::ggml_block_of<Scheme>::type;
  m.validate();
  LOWBIT_CHECK(m.group_size() == 32 && m.cols() % 32 == 0,
               "ggml export: needs group_size 32 and cols a multiple of 32, got group_size " << m.group_size() << ", cols " << m.cols());
  const std::size_t per_row = m.cols() / 32;
  std::vector<uint8_t> out(m.rows() * per_row * sizeof(block));
  for (std::size_t r = 0; r < m.rows(); ++r) {
    for (std::size_t g = 0; g < per_row; ++g) {
      block b{};
      for (std::size_t i = 0; i < 32; ++i) detail::set_block(b, m.row_scales(r)[g], i, m.code(r, g * 32 + i));
      std::memcpy(out.data() + (r * per_row + g) * sizeof(block), &b, sizeof(block));
    }
  }
  return out;
}

namespace detail {

/// Q4_K / Q5_K's 6-bit scale and min of sub-block j (0..7) from their 12 packed bytes.
inline void k_scale_min(const uint8_t* s, std::size_t j, unsigned& scale, unsigned& min) noexcept {
  if (j < 4) {
    scale = s[j] & 63u;
    min = s[j + 4] & 63u;
  } else {
    scale = (s[j + 4] & 0x0Fu) | ((s[j - 4] >> 6) << 4);
    min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

/// One 256-element super-block of Q4_K (144 bytes: d, dmin, 12 scale bytes, 128 nibble bytes),
/// or Q5_K (176 bytes: the same plus 32 bytes of fifth bits before the nibbles): sub-block j of
/// 32 is (d * scale_j) * q - dmin * min_j.
inline void dequantize_k_block(const uint8_t* p, bool five_bits, float* out) noexcept {
  uint16_t d_bits, dmin_bits;
  std::memcpy(&d_bits, p, 2);
  std::memcpy(&dmin_bits, p + 2, 2);
  const float d = fp16::from_bits(d_bits).to_float(), dmin = fp16::from_bits(dmin_bits).to_float();
  const uint8_t* scales = p + 4;
  const uint8_t* high = p + 16;
  const uint8_t* qs = five_bits ? p + 48 : p + 16;
  for (std::size_t j = 0; j < 8; ++j) {
    unsigned scale, min;
    k_scale_min(scales, j, scale, min);
    const float ds = d * static_cast<float>(scale), dm = dmin * static_cast<float>(min);
    for (std::size_t e = 0; e < 32; ++e) {
      unsigned q = (qs[(j / 2) * 32 + e] >> (4 * (j % 2))) & 15u;
      if (five_bits) q |= ((high[e] >> j) & 1u) << 4;
      out[j * 32 + e] = mul_then_add(ds, static_cast<float>(q), -dm);
    }
  }
}

/// One 256-element super-block of Q6_K (210 bytes: 128 low-nibble bytes, 64 bytes of high 2-bit
/// pairs, 16 int8 scales, d): element e is (d * scale_{e / 16}) * (q - 32).
inline void dequantize_q6_k_block(const uint8_t* p, float* out) noexcept {
  const uint8_t* ql = p;
  const uint8_t* qh = p + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(p + 192);
  uint16_t d_bits;
  std::memcpy(&d_bits, p + 208, 2);
  const float d = fp16::from_bits(d_bits).to_float();
  for (std::size_t e = 0; e < 256; ++e) {
    const std::size_t half = e / 128, within = e % 128;
    const unsigned low = (ql[half * 64 + within % 64] >> (4 * (within / 64))) & 15u;
    const unsigned high = (qh[half * 32 + within % 32] >> (2 * (within / 32))) & 3u;
    const int q = static_cast<int>(low | (high << 4)) - 32;
    out[e] = (d * static_cast<float>(scales[e / 16])) * static_cast<float>(q);
  }
}

}  // namespace detail

/// Dequantizes `elements` values of ggml type `type` from `bytes` bytes to float, computing each
/// value as ggml's reference (and gguf's numpy) does, so results match them bit for bit.
/// Types: F32, F16, BF16, Q4_0, Q4_1, Q8_0, IQ4_NL, MXFP4, Q4_K, Q5_K, Q6_K (the K-quants have
/// float minimums or 6-bit codes that no lowbit scheme stores as they are: dequantize, then
/// quantize with lowbit if the kernels are to run on them).
inline void dequantize_ggml(ggml_type type, const uint8_t* data, std::size_t bytes, std::size_t elements, float* out) {
  const ggml_type_info& info = ggml_info(type);
  const std::size_t need = ggml_bytes(type, 1, elements);
  LOWBIT_CHECK(bytes == need, "ggml " << info.name << ": " << bytes << " bytes for " << elements << " elements that need " << need);
  LOWBIT_CHECK((data != nullptr && out != nullptr) || elements == 0, "ggml " << info.name << ": null buffer");
  const std::size_t blocks = elements / info.block_elements;
  for (std::size_t i = 0; i < blocks; ++i) {
    const uint8_t* p = data + i * info.block_bytes;
    float* o = out + i * info.block_elements;
    switch (type) {
      case ggml_type::f32: std::memcpy(o, p, 4); break;
      case ggml_type::f16: { uint16_t h; std::memcpy(&h, p, 2); *o = fp16::from_bits(h).to_float(); break; }
      case ggml_type::bf16: { uint16_t h; std::memcpy(&h, p, 2); *o = bf16::from_bits(h).to_float(); break; }
      case ggml_type::q4_0: {
        block_q4_0 b; std::memcpy(&b, p, sizeof b);
        const float d = fp16::from_bits(b.d).to_float();
        for (std::size_t j = 0; j < 32; ++j) o[j] = static_cast<float>(static_cast<int>(detail::ggml_nibble(b.qs, j)) - 8) * d;
        break;
      }
      case ggml_type::q4_1: {
        block_q4_1 b; std::memcpy(&b, p, sizeof b);
        const float d = fp16::from_bits(b.d).to_float(), m = fp16::from_bits(b.m).to_float();
        for (std::size_t j = 0; j < 32; ++j) o[j] = mul_then_add(static_cast<float>(detail::ggml_nibble(b.qs, j)), d, m);
        break;
      }
      case ggml_type::q8_0: {
        block_q8_0 b; std::memcpy(&b, p, sizeof b);
        const float d = fp16::from_bits(b.d).to_float();
        for (std::size_t j = 0; j < 32; ++j) o[j] = static_cast<float>(b.qs[j]) * d;
        break;
      }
      case ggml_type::iq4_nl: {
        block_iq4_nl b; std::memcpy(&b, p, sizeof b);
        const float d = fp16::from_bits(b.d).to_float();
        for (std::size_t j = 0; j < 32; ++j) o[j] = iq4_nl_table::values[detail::ggml_nibble(b.qs, j)] * d;
        break;
      }
      case ggml_type::mxfp4: {
        block_mxfp4 b; std::memcpy(&b, p, sizeof b);
        // ggml: 2^(e - 128) (e = 0: 2^-128, built as a subnormal) times the doubled E2M1 value.
        const float half_scale = std::ldexp(1.0f, static_cast<int>(b.e) - 128);
        for (std::size_t j = 0; j < 32; ++j)
          o[j] = half_scale * (2.0f * format_traits<fp4_e2m1>::decode(detail::ggml_nibble(b.qs, j)));
        break;
      }
      case ggml_type::q4_k: detail::dequantize_k_block(p, false, o); break;
      case ggml_type::q5_k: detail::dequantize_k_block(p, true, o); break;
      case ggml_type::q6_k: detail::dequantize_q6_k_block(p, o); break;
      default: raise_error(std::string("ggml: dequantizing ") + info.name + " is not supported");
    }
  }
}

}  // namespace interop
}  // namespace lowbit
