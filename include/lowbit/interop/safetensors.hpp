/// \file
/// \brief safetensors files: a reader over a memory-mapped file (views, no copies) and a writer.
///
/// Format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of JSON
/// {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
/// "__metadata__": {"key": "value"}}, then the data. Offsets are relative to the data; the reader
/// checks every one against the file, and, as the format requires, that the tensors cover the data
/// exactly, without overlaps or holes. Headers above 100 MB are refused (the reference does too).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../core/views.hpp"
#include "bytes.hpp"
#include "json.hpp"
#include "mapped_file.hpp"

namespace lowbit {
namespace interop {

/// Element types of safetensors, with the names its header uses.
enum class st_dtype { boolean, u8, i8, f8_e5m2, f8_e4m3, f8_e8m0, i16, u16, f16, bf16, i32, u32, f32, f64, i64, u64 };

struct st_dtype_info {
  st_dtype dtype;
  const char* name;
  std::size_t bytes;
};

inline const st_dtype_info* st_dtype_table(std::size_t& count) noexcept {
  static const st_dtype_info table[] = {
      {st_dtype::boolean, "BOOL", 1}, {st_dtype::u8, "U8", 1},          {st_dtype::i8, "I8", 1},
      {st_dtype::f8_e5m2, "F8_E5M2", 1}, {st_dtype::f8_e4m3, "F8_E4M3", 1}, {st_dtype::f8_e8m0, "F8_E8M0", 1},
      {st_dtype::i16, "I16", 2},      {st_dtype::u16, "U16", 2},        {st_dtype::f16, "F16", 2},
      {st_dtype::bf16, "BF16", 2},    {st_dtype::i32, "I32", 4},        {st_dtype::u32, "U32", 4},
      {st_dtype::f32, "F32", 4},      {st_dtype::f64, "F64", 8},        {st_dtype::i64, "I64", 8},
      {st_dtype::u64, "U64", 8}};
  count = sizeof(table) / sizeof(table[0]);
  return table;
}

inline const st_dtype_info& st_info(st_dtype dtype) {
  std::size_t count = 0;
  const st_dtype_info* table = st_dtype_table(count);
  for (std::size_t i = 0; i < count; ++i)
    if (table[i].dtype == dtype) return table[i];
  raise_error("safetensors: unknown dtype value " + std::to_string(static_cast<int>(dtype)));
}

/// The dtype a C++ element type is stored as (for typed views and the writer).
template <class T> struct st_dtype_of;
template <> struct st_dtype_of<uint8_t> { static constexpr st_dtype value = st_dtype::u8; };
template <> struct st_dtype_of<int8_t> { static constexpr st_dtype value = st_dtype::i8; };
template <> struct st_dtype_of<int16_t> { static constexpr st_dtype value = st_dtype::i16; };
template <> struct st_dtype_of<uint16_t> { static constexpr st_dtype value = st_dtype::u16; };
template <> struct st_dtype_of<fp16> { static constexpr st_dtype value = st_dtype::f16; };
template <> struct st_dtype_of<bf16> { static constexpr st_dtype value = st_dtype::bf16; };
template <> struct st_dtype_of<int32_t> { static constexpr st_dtype value = st_dtype::i32; };
template <> struct st_dtype_of<uint32_t> { static constexpr st_dtype value = st_dtype::u32; };
template <> struct st_dtype_of<float> { static constexpr st_dtype value = st_dtype::f32; };
template <> struct st_dtype_of<double> { static constexpr st_dtype value = st_dtype::f64; };
template <> struct st_dtype_of<int64_t> { static constexpr st_dtype value = st_dtype::i64; };
template <> struct st_dtype_of<uint64_t> { static constexpr st_dtype value = st_dtype::u64; };

/// One tensor of a file: its bytes are borrowed from the file.
struct st_tensor {
  std::string name;
  st_dtype dtype = st_dtype::u8;
  std::vector<std::size_t> shape;
  const uint8_t* data = nullptr;
  std::size_t bytes = 0;

  std::size_t elements() const noexcept {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;  // validated against the byte count when read
    return n;
  }

  /// The tensor as a rows x cols matrix of T (1-D: one row; higher ranks: the leading dimensions
  /// folded into rows). Checks the dtype and T's alignment (file data need not be aligned: copy
  /// it with copy_to then).
  template <class T>
  matrix_view<const T> as_matrix() const {
    LOWBIT_CHECK(dtype == st_dtype_of<T>::value, "safetensors tensor '" << name << "' is " << st_info(dtype).name
                                                     << ", not " << st_info(st_dtype_of<T>::value).name);
    LOWBIT_CHECK(reinterpret_cast<std::uintptr_t>(data) % alignof(T) == 0,
                 "safetensors tensor '" << name << "' is not aligned for " << st_info(dtype).name << " (copy it)");
    const std::size_t cols = shape.empty() ? 1 : shape.back();
    const std::size_t rows = cols == 0 ? 0 : elements() / cols;
    return matrix_view<const T>(reinterpret_cast<const T*>(data), rows, cols);
  }

  /// Copies the elements into a vector of T (any alignment), checking the dtype.
  template <class T>
  std::vector<T> copy_to() const {
    LOWBIT_CHECK(dtype == st_dtype_of<T>::value, "safetensors tensor '" << name << "' is " << st_info(dtype).name
                                                     << ", not " << st_info(st_dtype_of<T>::value).name);
    std::vector<T> out(bytes / sizeof(T));
    if (bytes) std::memcpy(out.data(), data, bytes);
    return out;
  }
};

/// A parsed safetensors file. Tensors are views into the bytes given to parse(), or into the
/// file that open() maps and keeps.
class safetensors_file {
 public:
  static constexpr std::size_t max_header_bytes = 100u << 20;

  /// Maps and parses `path`.
  static safetensors_file open(const std::string& path) {
    safetensors_file f;
    f.file_ = mapped_file(path);
    f.parse_bytes(f.file_.data(), f.file_.size());
    return f;
  }

  /// Parses bytes that the caller keeps alive as long as the tensors are used.
  static safetensors_file parse(const uint8_t* bytes, std::size_t size) {
    safetensors_file f;
    f.parse_bytes(bytes, size);
    return f;
  }

  const std::vector<st_tensor>& tensors() const noexcept { return tensors_; }
  const std::vector<std::pair<std::string, std::string>>& metadata() const noexcept { return metadata_; }

  /// The tensor named `name`, or null.
  const st_tensor* find(const std::string& name) const noexcept {
    for (const auto& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }
  /// The tensor named `name`; a lowbit::error if the file has none.
  const st_tensor& at(const std::string& name) const {
    const st_tensor* t = find(name);
    LOWBIT_CHECK(t != nullptr, "safetensors: no tensor named '" << name << "'");
    return *t;
  }

 private:
  void parse_bytes(const uint8_t* bytes, std::size_t size) {
    LOWBIT_CHECK(bytes != nullptr || size == 0, "safetensors: bytes are null");
    byte_reader in(bytes, size, "safetensors");
    const std::size_t header_bytes = to_size(in.read<uint64_t>("header length"), "safetensors header length");
    LOWBIT_CHECK(header_bytes <= max_header_bytes,
                 "safetensors: header length " << header_bytes << " is above the limit of " << max_header_bytes);
    const char* header = reinterpret_cast<const char*>(in.take(header_bytes, "header"));
    const uint8_t* data = in.here();
    const std::size_t data_bytes = in.remaining();
    LOWBIT_CHECK(header_bytes > 0 && header[0] == '{', "safetensors: header does not start with '{'");

    const json_value root = parse_json(header, header_bytes);
    LOWBIT_CHECK(root.is(json_value::kind::object), "safetensors: header is not a JSON object");
    std::vector<std::pair<std::size_t, std::size_t>> ranges;  // (begin, index) for the coverage check
    for (const auto& member : root.members) {
      if (member.first == "__metadata__") {
        LOWBIT_CHECK(metadata_.empty(), "safetensors: __metadata__ appears twice");
        LOWBIT_CHECK(member.second.is(json_value::kind::object), "safetensors: __metadata__ is not an object");
        for (const auto& kv : member.second.members)
          metadata_.emplace_back(kv.first, kv.second.as_string("safetensors __metadata__ value"));
        continue;
      }
      st_tensor t = parse_tensor(member.first, member.second);
      const json_value& offsets = *member.second.find("data_offsets");
      const std::size_t begin = to_size(offsets.items[0].as_u64("data_offsets"), "data_offsets");
      const std::size_t end = to_size(offsets.items[1].as_u64("data_offsets"), "data_offsets");
      LOWBIT_CHECK(begin <= end && end <= data_bytes, "safetensors tensor '" << t.name << "': data_offsets [" << begin << ", "
                                                          << end << "] outside the " << data_bytes << " data bytes");
      LOWBIT_CHECK(end - begin == t.bytes, "safetensors tensor '" << t.name << "': " << (end - begin)
                                               << " bytes for a shape that needs " << t.bytes);
      t.data = data + begin;
      ranges.emplace_back(begin, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    std::vector<const std::string*> names;
    for (const auto& t : tensors_) names.push_back(&t.name);
    std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
    for (std::size_t i = 1; i < names.size(); ++i)
      LOWBIT_CHECK(*names[i] != *names[i - 1], "safetensors: tensor '" << *names[i] << "' appears twice");
    // The tensors must tile the data: sorted by start, each begins where the previous ended.
    std::sort(ranges.begin(), ranges.end());
    std::size_t expected = 0;
    for (const auto& r : ranges) {
      const st_tensor& t = tensors_[r.second];
      LOWBIT_CHECK(r.first == expected, "safetensors tensor '" << t.name << "' starts at " << r.first << ", expected "
                                                               << expected << " (overlap or hole in the data)");
      expected = r.first + t.bytes;
    }
    LOWBIT_CHECK(expected == data_bytes, "safetensors: tensors cover " << expected << " of " << data_bytes << " data bytes");
  }

  static st_tensor parse_tensor(const std::string& name, const json_value& v) {
    LOWBIT_CHECK(v.is(json_value::kind::object), "safetensors tensor '" << name << "' is not an object");
    const json_value* dtype = v.find("dtype");
    const json_value* shape = v.find("shape");
    const json_value* offsets = v.find("data_offsets");
    LOWBIT_CHECK(dtype && shape && offsets && v.members.size() == 3,
                 "safetensors tensor '" << name << "' needs exactly dtype, shape and data_offsets");
    LOWBIT_CHECK(shape->is(json_value::kind::array), "safetensors tensor '" << name << "': shape is not an array");
    LOWBIT_CHECK(offsets->is(json_value::kind::array) && offsets->items.size() == 2,
                 "safetensors tensor '" << name << "': data_offsets is not [begin, end]");
    st_tensor t;
    t.name = name;
    const std::string& dtype_name = dtype->as_string("safetensors dtype");
    std::size_t count = 0;
    const st_dtype_info* table = st_dtype_table(count);
    const st_dtype_info* info = nullptr;
    for (std::size_t i = 0; i < count; ++i)
      if (dtype_name == table[i].name) info = &table[i];
    LOWBIT_CHECK(info != nullptr, "safetensors tensor '" << name << "': unsupported dtype '" << dtype_name << "'");
    t.dtype = info->dtype;
    std::size_t elements = 1;
    for (const auto& d : shape->items) {
      t.shape.push_back(to_size(d.as_u64("safetensors shape"), "safetensors shape"));
      elements = checked_mul(elements, t.shape.back(), "safetensors shape");
    }
    t.bytes = checked_mul(elements, info->bytes, "safetensors tensor size");
    return t;
  }

  mapped_file file_;
  std::vector<st_tensor> tensors_;
  std::vector<std::pair<std::string, std::string>> metadata_;
};

/// Builds a safetensors file: add tensors (their bytes are copied), then bytes() or write().
class safetensors_writer {
 public:
  void add(const std::string& name, st_dtype dtype, std::vector<std::size_t> shape, const void* data, std::size_t bytes) {
    LOWBIT_CHECK(!name.empty() && name != "__metadata__", "safetensors_writer: invalid tensor name '" << name << "'");
    for (const auto& e : entries_) LOWBIT_CHECK(e.name != name, "safetensors_writer: tensor '" << name << "' added twice");
    std::size_t elements = 1;
    for (std::size_t d : shape) elements = checked_mul(elements, d, "safetensors_writer shape");
    LOWBIT_CHECK(checked_mul(elements, st_info(dtype).bytes, "safetensors_writer size") == bytes,
                 "safetensors_writer: tensor '" << name << "' has " << bytes << " bytes for " << elements << " "
                                                << st_info(dtype).name << " elements");
    LOWBIT_CHECK(data != nullptr || bytes == 0, "safetensors_writer: tensor '" << name << "' data is null");
    entry e{name, dtype, std::move(shape), std::string(static_cast<const char*>(data), bytes)};
    entries_.push_back(std::move(e));
  }

  /// Adds a typed tensor; the dtype follows T.
  template <class T>
  void add(const std::string& name, std::vector<std::size_t> shape, const T* data) {
    std::size_t elements = 1;
    for (std::size_t d : shape) elements = checked_mul(elements, d, "safetensors_writer shape");
    add(name, st_dtype_of<T>::value, std::move(shape), data, checked_mul(elements, sizeof(T), "safetensors_writer size"));
  }

  void add_metadata(const std::string& key, const std::string& value) { metadata_.emplace_back(key, value); }

  /// The file's bytes. The header is padded with spaces so the data starts 8-byte aligned, and
  /// tensors are laid out by element size, largest first (stable: in the order added within a
  /// size), as the safetensors package does: every tensor then starts aligned to its element.
  std::string bytes() const {
    std::vector<const entry*> order;
    for (const auto& e : entries_) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(),
                     [](const entry* a, const entry* b) { return st_info(a->dtype).bytes > st_info(b->dtype).bytes; });
    std::string header = "{";
    bool first = true;
    if (!metadata_.empty()) {
      header += "\"__metadata__\":{";
      for (std::size_t i = 0; i < metadata_.size(); ++i)
        header += (i ? "," : "") + json_quote(metadata_[i].first) + ":" + json_quote(metadata_[i].second);
      header += "}";
      first = false;
    }
    std::size_t offset = 0;
    for (const entry* p : order) {
      const entry& e = *p;
      header += (first ? "" : ",") + json_quote(e.name) + ":{\"dtype\":\"" + st_info(e.dtype).name + "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) header += (i ? "," : "") + std::to_string(e.shape[i]);
      header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.data.size()) + "]}";
      offset += e.data.size();
      first = false;
    }
    header += "}";
    while (header.size() % 8) header.push_back(' ');
    std::string out;
    out.reserve(8 + header.size() + offset);
    append_le<uint64_t>(out, header.size());
    out += header;
    for (const entry* e : order) out += e->data;
    return out;
  }

  void write(const std::string& path) const { write_file(path, bytes()); }

 private:
  struct entry {
    std::string name;
    st_dtype dtype;
    std::vector<std::size_t> shape;
    std::string data;
  };
  std::vector<entry> entries_;
  std::vector<std::pair<std::string, std::string>> metadata_;
};

}  // namespace interop
}  // namespace lowbit
