/// \file
/// \brief GGUF files (ggml / llama.cpp): a reader that maps tensors to views, and a writer.
///
/// Layout (ggml docs/gguf.md, versions 2 and 3): magic "GGUF", u32 version, u64 tensor count,
/// u64 key/value count; key/values (string key, u32 type, value; arrays carry an element type and
/// a u64 count); tensor infos (name, u32 n_dims <= 4, u64 dims with the fastest-varying first,
/// u32 ggml type, u64 offset); padding to `general.alignment` (default 32); the data. Every count,
/// length and offset is checked against the bytes that are there before anything is allocated,
/// and tensors must lie inside the data, aligned, without overlapping.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "bytes.hpp"
#include "ggml.hpp"
#include "mapped_file.hpp"

namespace lowbit {
namespace interop {

enum class gguf_type : uint32_t { u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
                                  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12 };

/// Bytes of a scalar GGUF type; 0 for string and array.
inline std::size_t gguf_scalar_bytes(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::u8: case gguf_type::i8: case gguf_type::boolean: return 1;
    case gguf_type::u16: case gguf_type::i16: return 2;
    case gguf_type::u32: case gguf_type::i32: case gguf_type::f32: return 4;
    case gguf_type::u64: case gguf_type::i64: case gguf_type::f64: return 8;
    default: return 0;
  }
}

/// A metadata value. Scalars keep their little-endian bits; arrays of scalars keep their packed
/// bytes (a million-entry array costs its bytes, not a million objects); arrays of strings or
/// arrays keep items.
struct gguf_value {
  gguf_type type = gguf_type::u8;
  uint64_t bits = 0;                 ///< scalar: the value's bits, zero-extended
  std::string text;                  ///< string
  gguf_type element_type = gguf_type::u8;  ///< array
  std::size_t count = 0;             ///< array length
  std::string raw;                   ///< array of scalars: count * element bytes, little-endian
  std::vector<gguf_value> items;     ///< array of strings or arrays

  static gguf_value scalar(gguf_type t, uint64_t bits) { gguf_value v; v.type = t; v.bits = bits; return v; }
  static gguf_value u32(uint32_t x) { return scalar(gguf_type::u32, x); }
  static gguf_value i32(int32_t x) { return scalar(gguf_type::i32, static_cast<uint32_t>(x)); }
  static gguf_value u64(uint64_t x) { return scalar(gguf_type::u64, x); }
  static gguf_value boolean(bool x) { return scalar(gguf_type::boolean, x ? 1 : 0); }
  static gguf_value f32(float x) { uint32_t b; std::memcpy(&b, &x, 4); return scalar(gguf_type::f32, b); }
  static gguf_value string(std::string s) { gguf_value v; v.type = gguf_type::string; v.text = std::move(s); return v; }
  static gguf_value strings(const std::vector<std::string>& list) {
    gguf_value v;
    v.type = gguf_type::array;
    v.element_type = gguf_type::string;
    v.count = list.size();
    for (const auto& s : list) v.items.push_back(string(s));
    return v;
  }

  /// An unsigned or non-negative signed integer of any width.
  uint64_t as_u64(const char* what) const {
    switch (type) {
      case gguf_type::u8: case gguf_type::u16: case gguf_type::u32: case gguf_type::u64: return bits;
      case gguf_type::i8: case gguf_type::i16: case gguf_type::i32: case gguf_type::i64: {
        const int64_t v = as_i64(what);
        LOWBIT_CHECK(v >= 0, what << ": " << v << " is negative");
        return static_cast<uint64_t>(v);
      }
      default: raise_error(std::string(what) + ": not an integer");
    }
  }
  int64_t as_i64(const char* what) const {
    const std::size_t n = gguf_scalar_bytes(type);
    LOWBIT_CHECK(n > 0 && type != gguf_type::f32 && type != gguf_type::f64 && type != gguf_type::boolean,
                 what << ": not an integer");
    const bool is_signed = type == gguf_type::i8 || type == gguf_type::i16 || type == gguf_type::i32 || type == gguf_type::i64;
    if (!is_signed || n == 8) return static_cast<int64_t>(bits);
    const uint64_t sign = uint64_t(1) << (8 * n - 1);
    return static_cast<int64_t>((bits ^ sign) - sign);  // sign-extend
  }
  double as_f64(const char* what) const {
    if (type == gguf_type::f32) { uint32_t b = static_cast<uint32_t>(bits); float f; std::memcpy(&f, &b, 4); return f; }
    if (type == gguf_type::f64) { double d; std::memcpy(&d, &bits, 8); return d; }
    return static_cast<double>(as_i64(what));
  }
  const std::string& as_string(const char* what) const {
    LOWBIT_CHECK(type == gguf_type::string, what << ": not a string");
    return text;
  }
};

/// One tensor of a GGUF file, its bytes borrowed from the file.
struct gguf_tensor {
  std::string name;
  std::vector<std::size_t> dims;  ///< ggml's ne: dims[0] varies fastest (a matrix's columns)
  ggml_type type = ggml_type::f32;
  std::size_t offset = 0;         ///< from the start of the data section
  const uint8_t* data = nullptr;
  std::size_t bytes = 0;

  std::size_t cols() const noexcept { return dims.empty() ? 1 : dims[0]; }
  std::size_t rows() const noexcept {
    std::size_t r = 1;
    for (std::size_t i = 1; i < dims.size(); ++i) r *= dims[i];  // checked when read
    return r;
  }
};

class gguf_file {
 public:
  static constexpr uint32_t magic = 0x46554747;  // "GGUF" read little-endian
  static constexpr std::size_t max_dims = 4;     // GGML_MAX_DIMS
  static constexpr std::size_t max_array_depth = 8;

  static gguf_file open(const std::string& path) {
    gguf_file f;
    f.file_ = mapped_file(path);
    f.parse_bytes(f.file_.data(), f.file_.size());
    return f;
  }
  /// Parses bytes that the caller keeps alive as long as the tensors are used.
  static gguf_file parse(const uint8_t* bytes, std::size_t size) {
    gguf_file f;
    f.parse_bytes(bytes, size);
    return f;
  }

  uint32_t version() const noexcept { return version_; }
  std::size_t alignment() const noexcept { return alignment_; }
  const std::vector<std::pair<std::string, gguf_value>>& metadata() const noexcept { return metadata_; }
  const std::vector<gguf_tensor>& tensors() const noexcept { return tensors_; }

  const gguf_value* find_metadata(const std::string& key) const noexcept {
    for (const auto& kv : metadata_)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
  const gguf_tensor* find(const std::string& name) const noexcept {
    for (const auto& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }
  const gguf_tensor& at(const std::string& name) const {
    const gguf_tensor* t = find(name);
    LOWBIT_CHECK(t != nullptr, "gguf: no tensor named '" << name << "'");
    return *t;
  }

 private:
  static std::string read_string(byte_reader& in, const char* what) {
    const std::size_t n = to_size(in.read<uint64_t>(what), what);
    const uint8_t* p = in.take(n, what);
    return std::string(reinterpret_cast<const char*>(p), n);
  }

  static gguf_value read_value(byte_reader& in, gguf_type type, std::size_t depth) {
    gguf_value v;
    v.type = type;
    if (type == gguf_type::string) {
      v.text = read_string(in, "gguf string value");
      return v;
    }
    if (type != gguf_type::array) {
      const std::size_t n = gguf_scalar_bytes(type);
      LOWBIT_CHECK(n > 0, "gguf: unknown value type " << static_cast<uint32_t>(type) << " at offset " << in.position());
      switch (n) {
        case 1: v.bits = in.read<uint8_t>("gguf value"); break;
        case 2: v.bits = in.read<uint16_t>("gguf value"); break;
        case 4: v.bits = in.read<uint32_t>("gguf value"); break;
        default: v.bits = in.read<uint64_t>("gguf value"); break;
      }
      LOWBIT_CHECK(type != gguf_type::boolean || v.bits <= 1, "gguf: bool value " << v.bits << " is neither 0 nor 1");
      return v;
    }
    LOWBIT_CHECK(depth < max_array_depth, "gguf: arrays nested deeper than " << max_array_depth);
    const uint32_t element = in.read<uint32_t>("gguf array type");
    v.element_type = static_cast<gguf_type>(element);
    v.count = to_size(in.read<uint64_t>("gguf array length"), "gguf array length");
    const std::size_t n = gguf_scalar_bytes(v.element_type);
    if (n > 0) {
      const std::size_t total = checked_mul(v.count, n, "gguf array bytes");
      const uint8_t* p = in.take(total, "gguf array");
      v.raw.assign(reinterpret_cast<const char*>(p), total);
      if (v.element_type == gguf_type::boolean)
        for (char c : v.raw) LOWBIT_CHECK(c == 0 || c == 1, "gguf: bool array element is neither 0 nor 1");
    } else {
      LOWBIT_CHECK(v.element_type == gguf_type::string || v.element_type == gguf_type::array,
                   "gguf: unknown array element type " << element);
      // Each element takes at least 8 bytes in the file, so a bad count runs out of bytes here
      // instead of reserving memory for it.
      for (std::size_t i = 0; i < v.count; ++i) v.items.push_back(read_value(in, v.element_type, depth + 1));
    }
    return v;
  }

  void parse_bytes(const uint8_t* bytes, std::size_t size) {
    LOWBIT_CHECK(bytes != nullptr || size == 0, "gguf: bytes are null");
    byte_reader in(bytes, size, "gguf");
    LOWBIT_CHECK(in.read<uint32_t>("magic") == magic, "gguf: not a GGUF file (bad magic)");
    version_ = in.read<uint32_t>("version");
    LOWBIT_CHECK(version_ == 2 || version_ == 3, "gguf: version " << version_ << " is not supported (2 and 3 are)");
    const uint64_t tensor_count = in.read<uint64_t>("tensor count");
    const uint64_t kv_count = in.read<uint64_t>("metadata count");

    for (uint64_t i = 0; i < kv_count; ++i) {
      std::string key = read_string(in, "gguf metadata key");
      const auto type = static_cast<gguf_type>(in.read<uint32_t>("gguf value type"));
      gguf_value value = read_value(in, type, 0);
      metadata_.emplace_back(std::move(key), std::move(value));
    }
    check_unique(metadata_, [](const std::pair<std::string, gguf_value>& kv) -> const std::string& { return kv.first; },
                 "metadata key");
    if (const gguf_value* a = find_metadata("general.alignment")) {
      LOWBIT_CHECK(a->type == gguf_type::u32, "gguf: general.alignment is not a u32");
      alignment_ = static_cast<std::size_t>(a->bits);
      LOWBIT_CHECK(alignment_ > 0 && (alignment_ & (alignment_ - 1)) == 0,
                   "gguf: general.alignment " << alignment_ << " is not a power of two");
    }

    for (uint64_t i = 0; i < tensor_count; ++i) {
      gguf_tensor t;
      t.name = read_string(in, "gguf tensor name");
      const uint32_t n_dims = in.read<uint32_t>("gguf tensor n_dims");
      LOWBIT_CHECK(n_dims >= 1 && n_dims <= max_dims, "gguf tensor '" << t.name << "': " << n_dims << " dimensions (1 to 4 allowed)");
      std::size_t elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        t.dims.push_back(to_size(in.read<uint64_t>("gguf tensor dim"), "gguf tensor dim"));
        LOWBIT_CHECK(t.dims.back() > 0, "gguf tensor '" << t.name << "': dimension " << d << " is 0");
        elements = checked_mul(elements, t.dims.back(), "gguf tensor elements");
      }
      const uint32_t type = in.read<uint32_t>("gguf tensor type");
      const ggml_type_info* info = ggml_info(type);
      LOWBIT_CHECK(info != nullptr, "gguf tensor '" << t.name << "': unknown ggml type " << type);
      t.type = info->type;
      t.bytes = ggml_bytes(t.type, elements / t.dims[0], t.dims[0]);
      t.offset = to_size(in.read<uint64_t>("gguf tensor offset"), "gguf tensor offset");
      LOWBIT_CHECK(t.offset % alignment_ == 0, "gguf tensor '" << t.name << "': offset " << t.offset
                                                                << " is not a multiple of the alignment " << alignment_);
      tensors_.push_back(std::move(t));
    }
    check_unique(tensors_, [](const gguf_tensor& t) -> const std::string& { return t.name; }, "tensor name");

    const std::size_t data_start = checked_add(in.position(), (alignment_ - in.position() % alignment_) % alignment_, "gguf data start");
    const std::size_t data_bytes = data_start <= size ? size - data_start : 0;
    LOWBIT_CHECK(tensors_.empty() || data_start <= size, "gguf: data section starts at " << data_start << ", past the end (" << size << ")");
    std::vector<std::pair<std::size_t, std::size_t>> ranges;  // (offset, end), to find overlaps
    for (auto& t : tensors_) {
      LOWBIT_CHECK(t.offset <= data_bytes && t.bytes <= data_bytes - t.offset,
                   "gguf tensor '" << t.name << "': " << t.bytes << " bytes at offset " << t.offset << " run past the "
                                   << data_bytes << " data bytes");
      t.data = bytes + data_start + t.offset;
      ranges.emplace_back(t.offset, t.offset + t.bytes);
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
      LOWBIT_CHECK(ranges[i].first >= ranges[i - 1].second, "gguf: tensors overlap at data offset " << ranges[i].first);
  }

  template <class T, class Name>
  static void check_unique(const std::vector<T>& list, Name name_of, const char* what) {
    std::vector<const std::string*> names;
    for (const auto& x : list) names.push_back(&name_of(x));
    std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
    for (std::size_t i = 1; i < names.size(); ++i)
      LOWBIT_CHECK(*names[i] != *names[i - 1], "gguf: " << what << " '" << *names[i] << "' appears twice");
  }

  mapped_file file_;
  uint32_t version_ = 0;
  std::size_t alignment_ = 32;
  std::vector<std::pair<std::string, gguf_value>> metadata_;
  std::vector<gguf_tensor> tensors_;
};

/// Imports a GGUF tensor of blocks as a lowbit matrix (see import_ggml): rows are the tensor's
/// outer dimensions, columns its first.
template <class Scheme>
quantized_matrix<Scheme> import_gguf(const gguf_tensor& t) {
  const ggml_type want = detail::ggml_block_of<Scheme>::id;
  LOWBIT_CHECK(t.type == want, "gguf tensor '" << t.name << "' is " << ggml_info(t.type).name << ", not " << ggml_info(want).name);
  return import_ggml<Scheme>(t.data, t.bytes, t.rows(), t.cols());
}

/// Builds a GGUF (version 3) file: metadata in the order added, then tensors, each padded to the
/// alignment. Python's gguf.GGUFWriter lays out the same content byte for byte the same way.
class gguf_writer {
 public:
  explicit gguf_writer(std::size_t alignment = 32) : alignment_(alignment) {
    LOWBIT_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0 && alignment <= UINT32_MAX,
                 "gguf_writer: alignment " << alignment << " is not a power of two");
    if (alignment != 32) add_metadata("general.alignment", gguf_value::u32(static_cast<uint32_t>(alignment)));
  }

  void add_metadata(const std::string& key, gguf_value value) {
    for (const auto& kv : metadata_) LOWBIT_CHECK(kv.first != key, "gguf_writer: metadata key '" << key << "' added twice");
    metadata_.emplace_back(key, std::move(value));
  }

  /// A tensor of `type` with ggml dims (fastest first); `bytes` must be what the dims need.
  void add_tensor(const std::string& name, ggml_type type, std::vector<std::size_t> dims, const void* data, std::size_t bytes) {
    for (const auto& t : tensors_) LOWBIT_CHECK(t.name != name, "gguf_writer: tensor '" << name << "' added twice");
    LOWBIT_CHECK(!dims.empty() && dims.size() <= gguf_file::max_dims, "gguf_writer: tensor '" << name << "' has " << dims.size() << " dims");
    std::size_t elements = 1;
    for (std::size_t d : dims) elements = checked_mul(elements, d, "gguf_writer elements");
    const std::size_t need = ggml_bytes(type, elements / dims[0], dims[0]);
    LOWBIT_CHECK(bytes == need && (data != nullptr || bytes == 0),
                 "gguf_writer: tensor '" << name << "' has " << bytes << " bytes, its dims need " << need);
    tensors_.push_back(entry{name, type, std::move(dims), std::string(static_cast<const char*>(data), bytes)});
  }

  /// A lowbit matrix of a ggml scheme as a 2-D tensor of blocks (cols = dims[0]).
  template <class Scheme>
  void add_matrix(const std::string& name, const quantized_view<Scheme>& m) {
    const std::vector<uint8_t> blocks = export_ggml(m);
    add_tensor(name, detail::ggml_block_of<Scheme>::id, {m.cols(), m.rows()}, blocks.data(), blocks.size());
  }

  std::string bytes() const {
    std::string out;
    append_le<uint32_t>(out, gguf_file::magic);
    append_le<uint32_t>(out, 3);
    append_le<uint64_t>(out, tensors_.size());
    append_le<uint64_t>(out, metadata_.size());
    for (const auto& kv : metadata_) {
      append_string(out, kv.first);
      append_le<uint32_t>(out, static_cast<uint32_t>(kv.second.type));
      append_value(out, kv.second);
    }
    std::size_t offset = 0;
    for (const auto& t : tensors_) {
      append_string(out, t.name);
      append_le<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
      for (std::size_t d : t.dims) append_le<uint64_t>(out, d);
      append_le<uint32_t>(out, static_cast<uint32_t>(t.type));
      append_le<uint64_t>(out, offset);
      offset += padded(t.data.size());
    }
    out.append(padded(out.size()) - out.size(), '\0');
    for (const auto& t : tensors_) {
      out += t.data;
      out.append(padded(t.data.size()) - t.data.size(), '\0');
    }
    return out;
  }

  void write(const std::string& path) const { write_file(path, bytes()); }

 private:
  struct entry {
    std::string name;
    ggml_type type;
    std::vector<std::size_t> dims;
    std::string data;
  };

  std::size_t padded(std::size_t n) const noexcept { return (n + alignment_ - 1) / alignment_ * alignment_; }
  static void append_string(std::string& out, const std::string& s) {
    append_le<uint64_t>(out, s.size());
    out += s;
  }
  static void append_value(std::string& out, const gguf_value& v) {
    if (v.type == gguf_type::string) return append_string(out, v.text);
    if (v.type == gguf_type::array) {
      append_le<uint32_t>(out, static_cast<uint32_t>(v.element_type));
      append_le<uint64_t>(out, v.count);
      if (gguf_scalar_bytes(v.element_type) > 0) out += v.raw;
      else for (const auto& item : v.items) append_value(out, item);
      return;
    }
    for (std::size_t i = 0; i < gguf_scalar_bytes(v.type); ++i) out.push_back(static_cast<char>((v.bits >> (8 * i)) & 0xFF));
  }

  std::size_t alignment_;
  std::vector<std::pair<std::string, gguf_value>> metadata_;
  std::vector<entry> tensors_;
};

}  // namespace interop
}  // namespace lowbit
