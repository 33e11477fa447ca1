// GGUF and ggml blocks against the gguf package (tests/data/gen/gen_interop.py): a file that
// gguf.GGUFWriter wrote reads back (metadata of every type, tensor directory, 2-D and 3-D
// tensors); every tensor (F32, F16, BF16, Q4_0, Q4_1, Q8_0, IQ4_NL, MXFP4, Q4_K, Q5_K, Q6_K)
// dequantizes bit for bit as gguf.quants does; Q4_0 / Q8_0 / IQ4_NL /
// MXFP4 import into lowbit matrices whose own dequantization and GEMV (every ISA path) agree
// with it; lowbit's writer rebuilds the file byte for byte; malformed files are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lowbit/arch/dispatch.hpp"
#include "lowbit/interop/gguf.hpp"
#include "lowbit/interop/safetensors.hpp"
#include "lowbit/kernels/gemm.hpp"
#include "lowbit/kernels/reference/dequantize.hpp"
#include "lowbit/layout/panel.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;
using namespace lowbit::interop;

const std::string data_dir = std::string(LOWBIT_TEST_DATA_DIR) + "/interop/";

struct golden {
  gguf_file file = gguf_file::open(data_dir + "small.gguf");
  safetensors_file reference = safetensors_file::open(data_dir + "small_gguf_reference.safetensors");
};

const golden& data() {
  static const golden g;
  return g;
}

uint32_t float_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}

TEST(Gguf, ReadsMetadataOfEveryType) {
  const gguf_file& f = data().file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.find_metadata("general.architecture")->as_string("arch"), "lowbit-test");
  EXPECT_EQ(f.find_metadata("test.u8")->as_u64("u8"), 200u);
  EXPECT_EQ(f.find_metadata("test.i8")->as_i64("i8"), -100);
  EXPECT_EQ(f.find_metadata("test.u16")->as_u64("u16"), 60000u);
  EXPECT_EQ(f.find_metadata("test.i16")->as_i64("i16"), -30000);
  EXPECT_EQ(f.find_metadata("test.u32")->as_u64("u32"), 4000000000u);
  EXPECT_EQ(f.find_metadata("test.i32")->as_i64("i32"), -2000000000);
  EXPECT_EQ(f.find_metadata("test.f32")->as_f64("f32"), 0.125);
  EXPECT_EQ(f.find_metadata("test.bool")->bits, 1u);
  EXPECT_EQ(f.find_metadata("test.string")->as_string("string"), "lowbit \xE2\x9C\x93");
  EXPECT_EQ(f.find_metadata("test.u64")->as_u64("u64"), (uint64_t(1) << 63) + 5);
  EXPECT_EQ(f.find_metadata("test.i64")->as_i64("i64"), -(int64_t(1) << 62));
  EXPECT_EQ(f.find_metadata("test.f64")->as_f64("f64"), -2.5);
  EXPECT_THROW(f.find_metadata("test.i8")->as_u64("i8"), lowbit::error);
  EXPECT_THROW(f.find_metadata("test.string")->as_u64("string"), lowbit::error);
  const gguf_value& ints = *f.find_metadata("test.array_i32");
  ASSERT_EQ(ints.type, gguf_type::array);
  ASSERT_EQ(ints.count, 3u);
  int32_t second;
  std::memcpy(&second, ints.raw.data() + 4, 4);
  EXPECT_EQ(second, -2);
  const gguf_value& strings = *f.find_metadata("test.array_str");
  ASSERT_EQ(strings.items.size(), 3u);
  EXPECT_EQ(strings.items[1].text, "bc");
  EXPECT_EQ(strings.items[2].text, "");
  EXPECT_EQ(f.find_metadata("absent"), nullptr);
}

TEST(Gguf, TensorsDequantizeBitForBitAsGgufDoes) {
  const gguf_file& f = data().file;
  ASSERT_EQ(f.tensors().size(), 12u);
  for (const gguf_tensor& t : f.tensors()) {
    const st_tensor& ref = data().reference.at(t.name);
    std::size_t elements = 1;
    for (std::size_t d : t.dims) elements *= d;
    ASSERT_EQ(elements, ref.elements()) << t.name;
    for (std::size_t i = 0; i < t.dims.size(); ++i) EXPECT_EQ(t.dims[i], ref.shape[ref.shape.size() - 1 - i]) << t.name;
    std::vector<float> out(elements);
    dequantize_ggml(t.type, t.data, t.bytes, elements, out.data());
    const std::vector<float> expected = ref.copy_to<float>();
    for (std::size_t i = 0; i < elements; ++i) ASSERT_EQ(float_bits(out[i]), float_bits(expected[i])) << t.name << " element " << i;
  }
  EXPECT_EQ(f.at("t.3d").rows(), 6u);
  EXPECT_EQ(f.at("t.3d").cols(), 32u);
  EXPECT_EQ(f.at("w.q4_1").type, ggml_type::q4_1);
}

template <class Scheme>
void check_import(const char* name) {
  const gguf_tensor& t = data().file.at(name);
  const quantized_matrix<Scheme> m = import_gguf<Scheme>(t);
  const std::vector<float> expected = data().reference.at(name).copy_to<float>();
  ASSERT_EQ(m.rows(), 16u);
  ASSERT_EQ(m.cols(), 256u);
  for (std::size_t r = 0; r < m.rows(); ++r)
    for (std::size_t k = 0; k < m.cols(); ++k)
      ASSERT_EQ(float_bits(reference::dequantize_element(m.view(), r, k)), float_bits(expected[r * 256 + k])) << name << " " << r << "," << k;
  // Export gives back the file's blocks.
  const std::vector<uint8_t> blocks = export_ggml(m.view());
  ASSERT_EQ(blocks.size(), t.bytes);
  EXPECT_EQ(std::memcmp(blocks.data(), t.data, t.bytes), 0) << name;

  // GEMV / small GEMM on the imported matrix, every path, against float64 on gguf's values.
  const st_tensor& xs = data().reference.at("x");
  const std::vector<float> x = xs.copy_to<float>();
  const std::size_t rows = xs.shape[0];
  const panel_matrix<Scheme> panels = pack_panels(m.view());
  for (isa path : supported_isas()) {
    std::vector<float> y(rows * 16);
    gemm(matrix_view<const float>(x.data(), rows, 256), panels, matrix_view<float>(y.data(), rows, 16), {}, serial_executor{}, path);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t n = 0; n < 16; ++n) {
        double ref = 0, magnitude = 0;
        for (std::size_t k = 0; k < 256; ++k) {
          ref += double(x[i * 256 + k]) * expected[n * 256 + k];
          magnitude += std::fabs(double(x[i * 256 + k]) * expected[n * 256 + k]);
        }
        EXPECT_NEAR(y[i * 16 + n], ref, 1e-5 * magnitude + 1e-30) << name << " " << isa_name(path) << " y(" << i << "," << n << ")";
      }
  }
}

TEST(Gguf, ImportsQ4_0) { check_import<ggml_scheme::q4_0>("w.q4_0"); }
TEST(Gguf, ImportsQ8_0) { check_import<ggml_scheme::q8_0>("w.q8_0"); }
TEST(Gguf, ImportsIq4Nl) { check_import<ggml_scheme::iq4_nl>("w.iq4_nl"); }
TEST(Gguf, ImportsMxfp4) { check_import<ggml_scheme::mxfp4>("w.mxfp4"); }

TEST(Gguf, ImportRefusesWrongTypesAndCorruptScales) {
  const gguf_file& f = data().file;
  EXPECT_THROW(import_gguf<ggml_scheme::q8_0>(f.at("w.q4_0")), lowbit::error);
  EXPECT_THROW(import_gguf<ggml_scheme::q4_0>(f.at("w.f32")), lowbit::error);
  const gguf_tensor& t = f.at("w.q4_0");
  EXPECT_THROW(import_ggml<ggml_scheme::q4_0>(t.data, t.bytes - 1, 16, 256), lowbit::error);
  EXPECT_THROW(import_ggml<ggml_scheme::q4_0>(t.data, t.bytes, 16, 250), lowbit::error);
  std::vector<uint8_t> blocks(t.data, t.data + t.bytes);
  blocks[18 * 5] = 0x00;
  blocks[18 * 5 + 1] = 0x7C;  // fp16 +inf as block 5's scale
  EXPECT_THROW(import_ggml<ggml_scheme::q4_0>(blocks.data(), blocks.size(), 16, 256), lowbit::error);
  const gguf_tensor& mx = f.at("w.mxfp4");
  std::vector<uint8_t> mx_blocks(mx.data, mx.data + mx.bytes);
  mx_blocks[17 * 3] = 0xFF;  // E8M0 NaN
  EXPECT_THROW(import_ggml<ggml_scheme::mxfp4>(mx_blocks.data(), mx_blocks.size(), 16, 256), lowbit::error);
  std::vector<float> out(256);
  std::vector<uint8_t> q2k(84);
  EXPECT_THROW(dequantize_ggml(ggml_type::q2_k, q2k.data(), q2k.size(), 256, out.data()), lowbit::error);  // not supported
  EXPECT_THROW(dequantize_ggml(ggml_type::q6_k, q2k.data(), q2k.size(), 256, out.data()), lowbit::error);  // 84 bytes, not 210
}

TEST(Gguf, WriterRebuildsTheFileByteForByte) {
  const gguf_file& f = data().file;
  gguf_writer w;
  for (const auto& kv : f.metadata()) w.add_metadata(kv.first, kv.second);
  for (const gguf_tensor& t : f.tensors()) w.add_tensor(t.name, t.type, t.dims, t.data, t.bytes);
  const std::string bytes = w.bytes();
  mapped_file original(data_dir + "small.gguf");
  ASSERT_EQ(bytes.size(), original.size());
  EXPECT_EQ(std::memcmp(bytes.data(), original.data(), bytes.size()), 0);

  // A matrix quantized by lowbit goes out as Q8_0 and comes back the same.
  const quantized_matrix<ggml_scheme::q8_0> m = import_gguf<ggml_scheme::q8_0>(f.at("w.q8_0"));
  gguf_writer w2(64);
  w2.add_metadata("general.architecture", gguf_value::string("x"));
  w2.add_matrix("m", m.view());
  const std::string b2 = w2.bytes();
  const gguf_file back = gguf_file::parse(reinterpret_cast<const uint8_t*>(b2.data()), b2.size());
  EXPECT_EQ(back.alignment(), 64u);
  const quantized_matrix<ggml_scheme::q8_0> m2 = import_gguf<ggml_scheme::q8_0>(back.at("m"));
  EXPECT_EQ(std::memcmp(m2.codes(), m.codes(), m.rows() * m.row_bytes()), 0);
  EXPECT_THROW(w2.add_matrix("m", m.view()), lowbit::error);
  EXPECT_THROW(w2.add_tensor("n", ggml_type::q4_0, {31, 2}, b2.data(), 36), lowbit::error);
}

std::string header(uint32_t version, uint64_t tensors, uint64_t kvs) {
  std::string out;
  append_le<uint32_t>(out, gguf_file::magic);
  append_le<uint32_t>(out, version);
  append_le<uint64_t>(out, tensors);
  append_le<uint64_t>(out, kvs);
  return out;
}
void add_string(std::string& out, const std::string& s) {
  append_le<uint64_t>(out, s.size());
  out += s;
}
std::string tensor_info(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
  std::string out;
  add_string(out, name);
  append_le<uint32_t>(out, static_cast<uint32_t>(dims.size()));
  for (uint64_t d : dims) append_le<uint64_t>(out, d);
  append_le<uint32_t>(out, type);
  append_le<uint64_t>(out, offset);
  return out;
}
std::string pad32(std::string s) {
  s.append((32 - s.size() % 32) % 32, '\0');
  return s;
}
void expect_refused(const std::string& bytes, const char* why) {
  EXPECT_THROW(gguf_file::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), lowbit::error) << why;
}

TEST(Gguf, RefusesMalformedFiles) {
  const std::string one = pad32(header(3, 1, 0) + tensor_info("t", {4}, 0, 0)) + std::string(16, '\0');
  EXPECT_EQ(gguf_file::parse(reinterpret_cast<const uint8_t*>(one.data()), one.size()).at("t").bytes, 16u);
  expect_refused("GGUF", "truncated header");
  expect_refused(std::string("GGML") + header(3, 0, 0).substr(4), "bad magic");
  expect_refused(header(1, 0, 0), "version 1");
  expect_refused(header(3, UINT64_MAX, 0), "tensor count far beyond the bytes");
  expect_refused(header(3, 0, UINT64_MAX), "metadata count far beyond the bytes");
  {
    std::string s = header(3, 0, 1);
    append_le<uint64_t>(s, UINT64_MAX);  // key length
    expect_refused(s, "key length beyond the file");
  }
  {
    std::string s = header(3, 0, 1);
    add_string(s, "k");
    append_le<uint32_t>(s, 9);  // array
    append_le<uint32_t>(s, 6);  // of f32
    append_le<uint64_t>(s, uint64_t(1) << 62);
    expect_refused(s, "array length beyond the file");
  }
  {
    std::string s = header(3, 0, 1);
    add_string(s, "k");
    append_le<uint32_t>(s, 9);  // an array
    for (int i = 0; i < 12; ++i) {
      append_le<uint32_t>(s, 9);  // of one array ...
      append_le<uint64_t>(s, 1);
    }
    expect_refused(s, "arrays nested 12 deep");
  }
  {
    std::string s = header(3, 0, 1);
    add_string(s, "k");
    append_le<uint32_t>(s, 13);  // no such type
    append_le<uint32_t>(s, 0);
    expect_refused(s, "unknown value type");
  }
  {
    std::string s = header(3, 0, 1);
    add_string(s, "general.alignment");
    append_le<uint32_t>(s, 4);
    append_le<uint32_t>(s, 48);
    expect_refused(s, "alignment not a power of two");
  }
  {
    std::string s = header(3, 0, 2);
    for (int i = 0; i < 2; ++i) {
      add_string(s, "k");
      append_le<uint32_t>(s, 0);
      s.push_back('\1');
    }
    expect_refused(s, "duplicate key");
  }
  expect_refused(pad32(header(3, 1, 0) + tensor_info("t", {4}, 0, 0)) + std::string(15, '\0'), "tensor past the end");
  expect_refused(pad32(header(3, 1, 0) + tensor_info("t", {4}, 0, 8)) + std::string(64, '\0'), "misaligned offset");
  expect_refused(pad32(header(3, 1, 0) + tensor_info("t", {4}, 99, 0)) + std::string(64, '\0'), "unknown ggml type");
  expect_refused(pad32(header(3, 1, 0) + tensor_info("t", {31}, 2, 0)) + std::string(64, '\0'), "partial block");
  expect_refused(pad32(header(3, 1, 0) + tensor_info("t", {0}, 0, 0)), "zero dimension");
  expect_refused(pad32(header(3, 1, 0) + tensor_info("t", {1, 1, 1, 1, 1}, 0, 0)) + std::string(32, '\0'), "five dims");
  expect_refused(pad32(header(3, 1, 0) + tensor_info("t", {uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0)), "size overflow");
  expect_refused(pad32(header(3, 2, 0) + tensor_info("t", {16}, 0, 0) + tensor_info("u", {16}, 0, 32)) + std::string(96, '\0'),
                 "overlapping tensors");
  expect_refused(pad32(header(3, 2, 0) + tensor_info("t", {4}, 0, 0) + tensor_info("t", {4}, 0, 32)) + std::string(64, '\0'),
                 "duplicate tensor name");

  // Every truncation and many single-byte changes of the real file: parsed or refused, never a crash.
  mapped_file real(data_dir + "small.gguf");
  const std::size_t header_end = 1024;  // the metadata and directory are in the first kilobyte
  for (std::size_t n = 0; n < header_end; ++n) {
    std::string s(reinterpret_cast<const char*>(real.data()), n);
    expect_refused(s, "truncated");
  }
  for (std::size_t i = 0; i < header_end; ++i) {
    std::string s(reinterpret_cast<const char*>(real.data()), real.size());
    s[i] = static_cast<char>(s[i] ^ (1 << (i % 8)));
    try {
      gguf_file::parse(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    } catch (const lowbit::error&) {
    }
  }
}

}  // namespace
}  // namespace lowbit_test
