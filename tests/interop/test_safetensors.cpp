// safetensors and its JSON header: a file written by the safetensors package (every dtype,
// metadata, a scalar and an empty tensor; tests/data/gen/gen_interop.py) reads back exactly;
// lowbit's writer round-trips; and malformed headers, offsets and truncations are refused with
// lowbit::error, never a crash (the fuzzer in tests/fuzz goes further).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lowbit/interop/safetensors.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;
using namespace lowbit::interop;

const std::string data_dir = std::string(LOWBIT_TEST_DATA_DIR) + "/interop/";

json_value parse(const std::string& s) { return parse_json(s.data(), s.size()); }

TEST(Json, ParsesValuesAndEscapes) {
  const json_value v = parse(R"( {"a": [1, -2.5e3, true, false, null], "b": "x\"\\\/\n\u00e9\ud83d\ude00", "c": {}} )");
  ASSERT_TRUE(v.is(json_value::kind::object));
  ASSERT_EQ(v.members.size(), 3u);
  const json_value& a = *v.find("a");
  ASSERT_EQ(a.items.size(), 5u);
  EXPECT_EQ(a.items[0].as_u64("a0"), 1u);
  EXPECT_EQ(a.items[1].text, "-2.5e3");
  EXPECT_TRUE(a.items[2].boolean);
  EXPECT_TRUE(a.items[4].is(json_value::kind::null));
  EXPECT_EQ(v.find("b")->text, "x\"\\/\n\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_TRUE(v.find("c")->is(json_value::kind::object));
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(parse("18446744073709551615").as_u64("max"), UINT64_MAX);
}

TEST(Json, RefusesMalformedText) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01", "1.", "-", "tru", "\"\\x\"", "\"\\ud800\"",
                          "\"a\nb\"", "[1] 2", "{\"a\":}", "\"unterminated", "[\"\\u12\"]"}) {
    EXPECT_THROW(parse(bad), lowbit::error) << bad;
  }
  EXPECT_THROW(parse("18446744073709551616").as_u64("big"), lowbit::error);
  EXPECT_THROW(parse("-1").as_u64("negative"), lowbit::error);
  EXPECT_THROW(parse("1e3").as_u64("exponent"), lowbit::error);
  EXPECT_THROW(parse(std::string(100, '[') + std::string(100, ']')), lowbit::error);  // too deep
  std::string list = "[0";
  for (int i = 0; i < 100; ++i) list += ",0";
  list += "]";
  EXPECT_THROW(parse_json(list.data(), list.size(), 64, 50), lowbit::error);  // too many values
  EXPECT_NO_THROW(parse_json(list.data(), list.size(), 64, 102));
}

template <class T>
std::vector<T> values(const safetensors_file& f, const char* name) { return f.at(name).copy_to<T>(); }

TEST(Safetensors, ReadsEveryDtypeThePackageWrites) {
  const safetensors_file f = safetensors_file::open(data_dir + "dtypes.safetensors");
  ASSERT_EQ(f.tensors().size(), 17u);
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata()[0].first == "format" ? f.metadata()[0].second : f.metadata()[1].second, "pt");
  bool note = false;
  for (const auto& kv : f.metadata()) note = note || (kv.first == "note" && kv.second == "quote \" and \xE2\x9C\x93");
  EXPECT_TRUE(note);

  EXPECT_EQ(f.at("bool").dtype, st_dtype::boolean);
  EXPECT_EQ(values<uint8_t>(f, "u8"), (std::vector<uint8_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(values<int8_t>(f, "i8"), (std::vector<int8_t>{-128, 0, 127}));
  EXPECT_EQ(values<int16_t>(f, "i16"), (std::vector<int16_t>{-32768, 7}));
  EXPECT_EQ(values<uint16_t>(f, "u16"), (std::vector<uint16_t>{65535}));
  const std::vector<fp16> h = values<fp16>(f, "f16");
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(h[0].to_float(), 1.5f);
  EXPECT_EQ(h[2].to_float(), 65504.0f);
  EXPECT_EQ(f.at("f16").shape, (std::vector<std::size_t>{2, 2}));
  const std::vector<bf16> b = values<bf16>(f, "bf16");
  EXPECT_EQ(b[1].to_float(), -3.5f);
  EXPECT_EQ(values<int32_t>(f, "i32"), (std::vector<int32_t>{-7, 1 << 30}));
  EXPECT_EQ(values<uint32_t>(f, "u32"), (std::vector<uint32_t>{4000000000u}));
  EXPECT_EQ(values<double>(f, "f64"), (std::vector<double>{0.1}));
  EXPECT_EQ(values<int64_t>(f, "i64"), (std::vector<int64_t>{-(int64_t(1) << 40)}));
  EXPECT_EQ(values<uint64_t>(f, "u64"), (std::vector<uint64_t>{uint64_t(1) << 63}));
  EXPECT_EQ(f.at("e4m3").dtype, st_dtype::f8_e4m3);
  EXPECT_EQ(f.at("e4m3").data[1], 0xFE);  // -448: S.1111.110
  EXPECT_EQ(f.at("e5m2").dtype, st_dtype::f8_e5m2);
  EXPECT_EQ(f.at("e5m2").data[0], 0x7B);  // 57344: 0.11110.11

  const st_tensor& f32 = f.at("f32");
  EXPECT_EQ(f32.shape, (std::vector<std::size_t>{2, 3, 4}));
  const matrix_view<const float> m = f32.as_matrix<float>();  // the file keeps it 4-byte aligned
  EXPECT_EQ(m.rows, 6u);
  EXPECT_EQ(m.cols, 4u);
  EXPECT_EQ(m(5, 3), 23.0f);
  EXPECT_THROW(f32.as_matrix<int32_t>(), lowbit::error);
  EXPECT_TRUE(f.at("scalar").shape.empty());
  EXPECT_EQ(values<float>(f, "scalar"), (std::vector<float>{3.0f}));
  EXPECT_EQ(f.at("empty").bytes, 0u);
  EXPECT_THROW(f.at("nope"), lowbit::error);
  EXPECT_THROW(safetensors_file::open(data_dir + "does_not_exist.safetensors"), lowbit::error);
}

TEST(Safetensors, WriterRoundTrips) {
  safetensors_writer w;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<int32_t> b = {-1, 7};
  w.add("a", {2, 3}, a.data());
  w.add("b\"quoted", {2}, b.data());
  w.add("scalar", {}, a.data());
  w.add_metadata("k", "v\n");
  const std::string bytes = w.bytes();
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  uint64_t header = 0;
  std::memcpy(&header, p, 8);
  EXPECT_EQ(header % 8, 0u);  // padded so the data starts 8-byte aligned
  const safetensors_file f = safetensors_file::parse(p, bytes.size());
  EXPECT_EQ(f.at("a").copy_to<float>(), a);
  EXPECT_EQ(f.at("a").shape, (std::vector<std::size_t>{2, 3}));
  EXPECT_EQ(f.at("b\"quoted").copy_to<int32_t>(), b);
  EXPECT_EQ(f.at("scalar").copy_to<float>(), std::vector<float>{1.0f});
  ASSERT_EQ(f.metadata().size(), 1u);
  EXPECT_EQ(f.metadata()[0].second, "v\n");
  EXPECT_THROW(w.add("a", {1}, a.data()), lowbit::error);                          // twice
  EXPECT_THROW(w.add("c", st_dtype::f32, {2}, a.data(), 4), lowbit::error);        // wrong byte count
  EXPECT_THROW(w.add("__metadata__", {1}, a.data()), lowbit::error);
}

std::string file_with_header(const std::string& header, std::size_t data_bytes) {
  std::string out;
  append_le<uint64_t>(out, header.size());
  return out + header + std::string(data_bytes, '\x01');
}

void expect_refused(const std::string& bytes, const char* why) {
  EXPECT_THROW(safetensors_file::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), lowbit::error) << why;
}

TEST(Safetensors, RefusesMalformedFiles) {
  const std::string t = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string good = file_with_header("{" + t + "}", 8);
  EXPECT_EQ(safetensors_file::parse(reinterpret_cast<const uint8_t*>(good.data()), good.size()).at("t").bytes, 8u);
  expect_refused(file_with_header("{" + t + "}", 12), "data bytes not covered");
  expect_refused(file_with_header("{" + t + "}", 4), "tensor past the end");
  expect_refused(file_with_header(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "shape and bytes disagree");
  expect_refused(file_with_header(R"({"t":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype");
  expect_refused(file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "reversed offsets");
  expect_refused(file_with_header(R"({"t":{"dtype":"F32","shape":[2]}})", 8), "no offsets");
  expect_refused(file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8), "extra field");
  expect_refused(file_with_header(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative dim");
  expect_refused(file_with_header(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", 8),
                 "shape overflows");
  expect_refused(file_with_header("{" + t + "," + t + "}", 16), "duplicate name");
  expect_refused(file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                 "overlap");
  expect_refused(file_with_header(R"({"__metadata__":{"a":1}})", 0), "metadata value not a string");
  expect_refused(file_with_header(R"([1])", 0), "header not an object");
  expect_refused(file_with_header(" {}", 0), "header not starting with {");
  std::string huge;
  append_le<uint64_t>(huge, uint64_t(1) << 62);
  expect_refused(huge + "{}", "header length beyond the file and the limit");
  expect_refused(std::string("\x02\0\0\0", 4), "file shorter than the length field");

  // Every truncation and every single-byte change of a real file: parsed or refused, never a crash.
  mapped_file real(data_dir + "dtypes.safetensors");
  const std::string whole(reinterpret_cast<const char*>(real.data()), real.size());
  for (std::size_t n = 0; n < whole.size(); ++n) expect_refused(whole.substr(0, n), "truncated");
  for (std::size_t i = 0; i < whole.size(); i += 3) {
    std::string changed = whole;
    changed[i] = static_cast<char>(changed[i] ^ 0x5A);
    try {
      safetensors_file::parse(reinterpret_cast<const uint8_t*>(changed.data()), changed.size());
    } catch (const lowbit::error&) {
    }
  }
}

}  // namespace
}  // namespace lowbit_test
