/// \file
/// \brief lowbit's own matrices in safetensors files: saved as they are in memory, loaded back as
/// zero-copy views into the memory-mapped file.
///
/// A quantized_matrix<Scheme> named `w` is stored as `w.codes` (U8, rows x row_bytes, lowbit's
/// reference packing), `w.scales` (F32 / F16 / BF16 / F8_E8M0, rows x groups) and, with zero
/// points, `w.zeros` (U8); the metadata entry `lowbit.w` records "format,cols,group_size" so a
/// load with another scheme or a corrupt shape is refused. safetensors_writer puts the larger
/// elements first, so the scales are aligned in the file and the view needs no copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <type_traits>

#include "../core/error.hpp"
#include "../layout/quantized_matrix.hpp"
#include "../scheme.hpp"
#include "safetensors.hpp"

namespace lowbit {
namespace interop {

namespace detail {
template <class Scale> struct st_scale_dtype;
template <> struct st_scale_dtype<float> { static constexpr st_dtype value = st_dtype::f32; };
template <> struct st_scale_dtype<fp16> { static constexpr st_dtype value = st_dtype::f16; };
template <> struct st_scale_dtype<bf16> { static constexpr st_dtype value = st_dtype::bf16; };
template <> struct st_scale_dtype<e8m0> { static constexpr st_dtype value = st_dtype::f8_e8m0; };

template <class Scheme>
std::string quantized_description(std::size_t cols, std::size_t group_size) {
  std::ostringstream d;
  d << format_traits<typename Scheme::format>::name << ',' << scale_traits<typename Scheme::scale_type>::name
    << (Scheme::has_zero ? ",zeros," : ",") << cols << ',' << group_size;
  return d.str();
}
}  // namespace detail

/// Adds `m` to a safetensors file being built, under `name`.
template <class Scheme>
void add_quantized(safetensors_writer& file, const std::string& name, const quantized_view<Scheme>& m) {
  m.validate();
  using scale_type = typename Scheme::scale_type;
  file.add(name + ".codes", st_dtype::u8, {m.rows(), m.row_bytes()}, m.codes, m.rows() * m.row_bytes());
  file.add(name + ".scales", detail::st_scale_dtype<scale_type>::value, {m.rows(), m.groups_per_row()}, m.scales,
           m.rows() * m.groups_per_row() * sizeof(scale_type));
  if (Scheme::has_zero) file.add(name + ".zeros", st_dtype::u8, {m.rows(), m.groups_per_row()}, m.zeros, m.rows() * m.groups_per_row());
  file.add_metadata("lowbit." + name, detail::quantized_description<Scheme>(m.cols(), m.group_size()));
}

namespace detail {
/// The checked shape and the file's pointers of a saved matrix; the scales may be misaligned.
template <class Scheme>
quantized_view<Scheme> saved_quantized(const safetensors_file& file, const std::string& name) {
  using scale_type = typename Scheme::scale_type;
  std::string description;
  for (const auto& kv : file.metadata())
    if (kv.first == "lowbit." + name) description = kv.second;
  LOWBIT_CHECK(!description.empty(), "safetensors: no lowbit matrix named '" << name << "' (metadata lowbit." << name << ")");
  const st_tensor& codes = file.at(name + ".codes");
  const st_tensor& scales = file.at(name + ".scales");
  LOWBIT_CHECK(codes.shape.size() == 2 && scales.shape.size() == 2 && codes.dtype == st_dtype::u8 &&
                   scales.dtype == detail::st_scale_dtype<scale_type>::value,
               "safetensors: '" << name << "' codes / scales have the wrong rank or dtype for this scheme");
  // "format,scale[,zeros],cols,group_size": cols and group_size are the last two fields.
  const std::size_t last = description.rfind(','), before = description.rfind(',', last == 0 ? 0 : last - 1);
  LOWBIT_CHECK(last != std::string::npos && before != std::string::npos, "safetensors: malformed lowbit." << name << " '" << description << "'");
  quantized_view<Scheme> v;
  const std::string cols_text = description.substr(before + 1, last - before - 1), group_text = description.substr(last + 1);
  const json_value cols = parse_json(cols_text.data(), cols_text.size(), 1, 1), group = parse_json(group_text.data(), group_text.size(), 1, 1);
  v.shape = quantized_shape{codes.shape[0], to_size(cols.as_u64("lowbit cols"), "lowbit cols"), to_size(group.as_u64("lowbit group_size"), "lowbit group_size")};
  LOWBIT_CHECK(description == detail::quantized_description<Scheme>(v.shape.cols, v.shape.group_size),
               "safetensors: '" << name << "' was saved as " << description << ", not "
                                << detail::quantized_description<Scheme>(v.shape.cols, v.shape.group_size));
  check_quantized_shape(v.shape);
  LOWBIT_CHECK(codes.shape[1] == v.row_bytes() && scales.shape[0] == v.rows() && scales.shape[1] == v.groups_per_row(),
               "safetensors: '" << name << "' codes / scales shapes do not match " << v.rows() << " x " << v.cols()
                                << " with group_size " << v.group_size());
  v.codes = codes.data;
  v.scales = reinterpret_cast<const scale_type*>(scales.data);
  if (Scheme::has_zero) {
    const st_tensor& zeros = file.at(name + ".zeros");
    LOWBIT_CHECK(zeros.dtype == st_dtype::u8 && zeros.shape == scales.shape, "safetensors: '" << name << "' zeros do not match its scales");
    v.zeros = zeros.data;
  }
  return v;
}
}  // namespace detail

/// The matrix saved under `name`, as a view into the file's memory (valid while `file` lives).
/// Throws lowbit::error if it was saved with another scheme, if shapes disagree, if the scales
/// are not aligned for direct use (load_quantized copies instead), or if the contents are not
/// valid (non-finite scales, zero points out of range).
template <class Scheme>
quantized_view<Scheme> view_quantized(const safetensors_file& file, const std::string& name) {
  const quantized_view<Scheme> v = detail::saved_quantized<Scheme>(file, name);
  LOWBIT_CHECK(reinterpret_cast<std::uintptr_t>(v.scales) % alignof(typename Scheme::scale_type) == 0,
               "safetensors: '" << name << "' scales are not aligned in the file (load_quantized copies them)");
  v.validate_contents();
  return v;
}

/// The matrix saved under `name`, copied out of the file (any alignment); checked as view_quantized.
template <class Scheme>
quantized_matrix<Scheme> load_quantized(const safetensors_file& file, const std::string& name) {
  const quantized_view<Scheme> v = detail::saved_quantized<Scheme>(file, name);
  quantized_matrix<Scheme> m(v.rows(), v.cols(), v.group_size());
  std::memcpy(m.codes(), v.codes, v.rows() * v.row_bytes());
  std::memcpy(static_cast<void*>(m.scales()), static_cast<const void*>(v.scales), v.shape.group_count() * sizeof(typename Scheme::scale_type));
  if (Scheme::has_zero) std::memcpy(m.zeros(), v.zeros, v.shape.group_count());
  m.view().validate_contents();
  return m;
}

}  // namespace interop
}  // namespace lowbit
