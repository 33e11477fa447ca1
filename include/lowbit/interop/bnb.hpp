/// \file
/// \brief bitsandbytes 4-bit weights (NF4, FP4), with or without double-quantized absmax, imported
/// into lowbit matrices with fp32 group scales.
///
/// bitsandbytes flattens the weight row-major, quantizes blocks of `blocksize` elements to codes
/// of a 16-entry map times the block's absmax, and packs two codes a byte, the first in the high
/// nibble. With double quantization ("compress_statistics") each absmax is stored as an 8-bit
/// code: absmax = nested_map[code] * nested_absmax[block / nested_blocksize] + offset, computed
/// in that order in fp32 (as its kernels and torch do). Hugging Face checkpoints store the
/// packed weight with `.absmax`, `.quant_map`, `.nested_absmax`, `.nested_quant_map` and a JSON
/// `.quant_state.bitsandbytes__nf4` (or `__fp4`) beside it: import_bnb reads all of them.
/// lowbit groups never span rows, so a row length that is not a multiple of blocksize is refused.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/rounding.hpp"
#include "../formats/bnb_fp4.hpp"
#include "../formats/nf4.hpp"
#include "../layout/quantized_matrix.hpp"
#include "../scheme.hpp"
#include "ggml.hpp"
#include "json.hpp"
#include "safetensors.hpp"

namespace lowbit {
namespace interop {

using bnb_nf4 = scheme<nf4, float>;
using bnb_fp4_scheme = scheme<bnb_fp4, float>;

/// Borrowed arrays of one bitsandbytes 4-bit weight (rows x cols before flattening).
struct bnb_4bit_tensors {
  const uint8_t* packed = nullptr;      ///< rows * cols / 2 bytes
  std::size_t rows = 0, cols = 0;
  std::size_t blocksize = 64;
  const float* absmax = nullptr;        ///< one per block, or null when double-quantized
  const uint8_t* absmax_codes = nullptr;  ///< double quantization: one code per block
  const float* nested_map = nullptr;    ///< 256 values the codes index
  const float* nested_absmax = nullptr; ///< one per nested block
  std::size_t nested_blocksize = 256;
  float offset = 0.0f;
};

namespace detail {
template <class Scheme>
uint8_t bnb_code(uint8_t c) noexcept {
  if constexpr (std::is_same<typename Scheme::format, bnb_fp4>::value) return bnb_fp4_code(c);
  else return c;  // NF4: bitsandbytes' code order is the table's
}
}  // namespace detail

/// Imports into bnb_nf4 or bnb_fp4_scheme (group size = blocksize). Shapes, the absmax of every
/// block (finite; double quantization resolved first) and the codes' count are checked.
template <class Scheme>
quantized_matrix<Scheme> import_bnb_4bit(const bnb_4bit_tensors& t) {
  static_assert(std::is_same<Scheme, bnb_nf4>::value || std::is_same<Scheme, bnb_fp4_scheme>::value,
                "bitsandbytes 4-bit imports into bnb_nf4 or bnb_fp4_scheme");
  const std::size_t elements = checked_mul(t.rows, t.cols, "bnb elements");
  LOWBIT_CHECK(elements > 0 && elements % 2 == 0, "bnb: " << t.rows << " x " << t.cols << " is empty or odd");
  LOWBIT_CHECK(t.blocksize > 0 && t.cols % t.blocksize == 0,
               "bnb: blocksize " << t.blocksize << " does not divide the row length " << t.cols << " (blocks would span rows)");
  LOWBIT_CHECK(t.packed != nullptr, "bnb: packed weight is null");
  const std::size_t blocks = elements / t.blocksize;
  std::vector<float> absmax(blocks);
  if (t.absmax_codes) {
    LOWBIT_CHECK(t.nested_map && t.nested_absmax && t.nested_blocksize > 0, "bnb: double quantization needs its map, absmax and blocksize");
    for (std::size_t b = 0; b < blocks; ++b)
      absmax[b] = mul_then_add(t.nested_map[t.absmax_codes[b]], t.nested_absmax[b / t.nested_blocksize], t.offset);
  } else {
    LOWBIT_CHECK(t.absmax != nullptr, "bnb: absmax is null");
    std::memcpy(absmax.data(), t.absmax, blocks * sizeof(float));
  }
  quantized_matrix<Scheme> m(t.rows, t.cols, t.blocksize);
  const std::size_t per_row = t.cols / t.blocksize;
  for (std::size_t b = 0; b < blocks; ++b) m.scale(b / per_row, b % per_row) = absmax[b];
  // A bitsandbytes byte holds elements 2j (high nibble) and 2j + 1 (low): lowbit's byte j with
  // the nibbles swapped and mapped, byte for byte when rows are whole bytes (cols even).
  uint8_t to_lowbit[256];
  for (unsigned v = 0; v < 256; ++v)
    to_lowbit[v] = static_cast<uint8_t>(detail::bnb_code<Scheme>(static_cast<uint8_t>(v >> 4)) |
                                        (detail::bnb_code<Scheme>(static_cast<uint8_t>(v & 15)) << 4));
  if (t.cols % 2 == 0) {
    for (std::size_t i = 0; i < elements / 2; ++i) m.codes()[i] = to_lowbit[t.packed[i]];  // rows are contiguous bytes
  } else {
    for (std::size_t e = 0; e < elements; ++e) {
      const uint8_t byte = t.packed[e / 2];
      const uint8_t code = (e % 2 == 0) ? (byte >> 4) : (byte & 15);
      m.set_code(e / t.cols, e % t.cols, detail::bnb_code<Scheme>(code));
    }
  }
  m.view().validate_contents();
  return m;
}

/// Reads a Hugging Face bitsandbytes 4-bit weight from a safetensors file: `name` (U8 packed),
/// `name.absmax`, `name.quant_map` (must be bitsandbytes' NF4 / FP4 map: lowbit's table), and with double quantization `name.nested_absmax` and `name.nested_quant_map`, driven by
/// the JSON in `name.quant_state.bitsandbytes__nf4` (or `__fp4`). Scheme: bnb_nf4 or bnb_fp4_scheme.
template <class Scheme>
quantized_matrix<Scheme> import_bnb(const safetensors_file& file, const std::string& name) {
  constexpr bool is_nf4 = std::is_same<Scheme, bnb_nf4>::value;
  const std::string quant_type = is_nf4 ? "nf4" : "fp4";
  const st_tensor* state_tensor = file.find(name + ".quant_state.bitsandbytes__" + quant_type);
  LOWBIT_CHECK(state_tensor != nullptr && state_tensor->dtype == st_dtype::u8,
               "bnb: no U8 tensor " << name << ".quant_state.bitsandbytes__" << quant_type);
  const json_value state = parse_json(reinterpret_cast<const char*>(state_tensor->data), state_tensor->bytes, 8, 1024);
  LOWBIT_CHECK(state.is(json_value::kind::object), "bnb: " << state_tensor->name << " is not a JSON object");
  const json_value* type = state.find("quant_type");
  const json_value* blocksize = state.find("blocksize");
  const json_value* shape = state.find("shape");
  LOWBIT_CHECK(type && blocksize && shape && shape->is(json_value::kind::array) && shape->items.size() == 2,
               "bnb: " << state_tensor->name << " lacks quant_type, blocksize or a 2-D shape");
  LOWBIT_CHECK(type->as_string("bnb quant_type") == quant_type, "bnb: quant_type is " << type->text << ", not " << quant_type);

  bnb_4bit_tensors t;
  t.rows = to_size(shape->items[0].as_u64("bnb shape"), "bnb shape");
  t.cols = to_size(shape->items[1].as_u64("bnb shape"), "bnb shape");
  t.blocksize = to_size(blocksize->as_u64("bnb blocksize"), "bnb blocksize");
  const std::size_t elements = checked_mul(t.rows, t.cols, "bnb elements");
  LOWBIT_CHECK(t.blocksize > 0 && elements % t.blocksize == 0, "bnb: blocksize " << t.blocksize << " does not divide " << elements);
  const std::size_t blocks = elements / t.blocksize;

  const st_tensor& packed = file.at(name);
  LOWBIT_CHECK(packed.dtype == st_dtype::u8 && packed.bytes * 2 == elements,
               "bnb: " << name << " is not U8 with " << elements / 2 << " bytes (packed storage other than uint8 is not supported)");
  t.packed = packed.data;

  const std::vector<float> map = file.at(name + ".quant_map").copy_to<float>();
  LOWBIT_CHECK(map.size() == 16, "bnb: " << name << ".quant_map has " << map.size() << " values, not 16");
  for (uint8_t c = 0; c < 16; ++c) {
    const float mine = format_traits<typename Scheme::format>::decode(detail::bnb_code<Scheme>(c));
    // Compared as values: bitsandbytes' FP4 map lists code 8 as +0 while its kernels decode it
    // as -1 * 0 = -0 (as lowbit does).
    LOWBIT_CHECK(mine == map[c],
                 "bnb: " << name << ".quant_map[" << int(c) << "] = " << map[c] << " is not bitsandbytes' " << quant_type << " value " << mine);
  }

  std::vector<float> absmax, nested_absmax, nested_map;
  const st_tensor& absmax_tensor = file.at(name + ".absmax");
  if (const json_value* offset = state.find("nested_offset")) {
    const json_value* nested_blocksize = state.find("nested_blocksize");
    LOWBIT_CHECK(nested_blocksize != nullptr, "bnb: nested_offset without nested_blocksize");
    t.nested_blocksize = to_size(nested_blocksize->as_u64("bnb nested_blocksize"), "bnb nested_blocksize");
    LOWBIT_CHECK(t.nested_blocksize > 0, "bnb: nested_blocksize is 0");
    t.offset = static_cast<float>(offset->as_double("bnb nested_offset"));
    LOWBIT_CHECK(absmax_tensor.dtype == st_dtype::u8 && absmax_tensor.bytes == blocks,
                 "bnb: " << absmax_tensor.name << " is not " << blocks << " U8 codes");
    t.absmax_codes = absmax_tensor.data;
    nested_map = file.at(name + ".nested_quant_map").copy_to<float>();
    LOWBIT_CHECK(nested_map.size() == 256, "bnb: nested_quant_map has " << nested_map.size() << " values, not 256");
    nested_absmax = file.at(name + ".nested_absmax").copy_to<float>();
    LOWBIT_CHECK(nested_absmax.size() == (blocks + t.nested_blocksize - 1) / t.nested_blocksize,
                 "bnb: nested_absmax has " << nested_absmax.size() << " values for " << blocks << " blocks");
    t.nested_map = nested_map.data();
    t.nested_absmax = nested_absmax.data();
  } else {
    absmax = absmax_tensor.copy_to<float>();
    LOWBIT_CHECK(absmax.size() == blocks, "bnb: " << absmax_tensor.name << " has " << absmax.size() << " values for " << blocks << " blocks");
    t.absmax = absmax.data();
  }
  return import_bnb_4bit<Scheme>(t);
}

}  // namespace interop
}  // namespace lowbit
