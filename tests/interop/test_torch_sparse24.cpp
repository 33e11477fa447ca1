// PyTorch's semi-structured (2:4) CUTLASS layout against data PyTorch 2.11 made
// (tests/data/gen/gen_torch_sparse24.py; checked there against its CUDA tensors): lowbit's
// metadata export equals PyTorch's bit for bit, its import gives back the pattern, the kept
// values are in PyTorch's order, int8 matrices round-trip exactly, and corrupt metadata is refused.
// Matrices with groups of fewer than two non-zeros (*_fewer): PyTorch names zero positions by its
// own rule there; lowbit reads them right, and its own choice differs only in such groups.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "lowbit/interop/torch_sparse24.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;

struct array {
  std::string dtype;
  std::size_t rows = 0, cols = 0;
  std::vector<uint8_t> bytes;
};

std::map<std::string, array> load_golden() {
  const std::string dir = std::string(LOWBIT_TEST_DATA_DIR) + "/sparse/";
  std::ifstream manifest(dir + "torch_sparse24.txt"), blob(dir + "torch_sparse24.bin", std::ios::binary);
  EXPECT_TRUE(manifest && blob) << "golden data missing in " << dir;
  const std::vector<uint8_t> all((std::istreambuf_iterator<char>(blob)), std::istreambuf_iterator<char>());
  std::map<std::string, array> out;
  std::string line;
  while (std::getline(manifest, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name;
    array a;
    std::size_t offset = 0, count = 0;
    fields >> name >> a.dtype >> a.rows >> a.cols >> offset >> count;
    EXPECT_LE(offset + count, all.size()) << name;
    if (offset + count > all.size()) continue;
    a.bytes.assign(all.begin() + static_cast<std::ptrdiff_t>(offset), all.begin() + static_cast<std::ptrdiff_t>(offset + count));
    out[name] = a;
  }
  return out;
}

float element(const array& a, std::size_t i) {
  if (a.dtype == "i8") return static_cast<float>(static_cast<int8_t>(a.bytes[i]));
  uint16_t bits;
  std::memcpy(&bits, a.bytes.data() + 2 * i, 2);
  if (a.dtype == "f16") return fp16::from_bits(bits).to_float();
  return bf16::from_bits(bits).to_float();
}

TEST(torch_sparse24, metadata_and_values_match_pytorch) {
  const std::map<std::string, array> golden = load_golden();
  ASSERT_EQ(golden.size(), 27u);
  for (const char* tag : {"f16", "bf16", "i8"})
    for (const char* shape : {"64x128", "96x256"}) {
      const std::string name = std::string(tag) + "_" + shape;
      SCOPED_TRACE(name);
      const array& dense = golden.at(name + "_dense");
      const array& values = golden.at(name + "_values");
      const array& meta = golden.at(name + "_meta");
      const std::size_t rows = dense.rows, cols = dense.cols, esize = dense.dtype == "i8" ? 1 : 2;
      const unsigned bits = dense.dtype == "i8" ? 32 : 16;
      std::vector<float> w(rows * cols);
      for (std::size_t i = 0; i < w.size(); ++i) w[i] = element(dense, i);
      const sparse24_positions found = find_sparse24_positions(w.data(), rows, cols, cols);
      // Our metadata, reordered, is PyTorch's, byte for byte; and reading PyTorch's gives the pattern.
      EXPECT_EQ(torch_sparse24::export_metadata(found, bits), meta.bytes);
      EXPECT_EQ(torch_sparse24::import_metadata(meta.bytes.data(), rows, cols, bits).nibbles, found.nibbles);
      // PyTorch's values are the kept ones in lowbit's order.
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < cols / 2; ++j) {
          const unsigned nibble = found.get(r, j / 2);
          const std::size_t k = j / 2 * 4 + (j % 2 ? nibble >> 2 : nibble & 3u);
          ASSERT_EQ(std::memcmp(dense.bytes.data() + (r * cols + k) * esize,
                                values.bytes.data() + (r * cols / 2 + j) * esize, esize),
                    0)
              << r << " " << j;
        }
      if (bits == 32) {
        // int8: exact both ways.
        const auto* v = reinterpret_cast<const int8_t*>(values.bytes.data());
        const sparse24_matrix<scheme<int8, float>> m = torch_sparse24::import_int8(v, meta.bytes.data(), rows, cols);
        EXPECT_EQ(sparse24_to_dense(m), w);
        const std::vector<int8_t> back = torch_sparse24::export_values<int8_t>(m);
        EXPECT_EQ(std::memcmp(back.data(), v, back.size()), 0);
      } else if (dense.dtype == "f16") {
        // fp16 through a lowbit scheme and back: an int8 scheme keeps each value within half a
        // step (range / 254) of its row, the fp16 result adds half an fp16 ulp; the metadata survives.
        std::vector<fp16> v(rows * cols / 2);
        std::memcpy(v.data(), values.bytes.data(), values.bytes.size());
        const auto m = torch_sparse24::import_matrix<scheme<int8, float>>(v.data(), meta.bytes.data(), rows, cols);
        const std::vector<fp16> back = torch_sparse24::export_values<fp16>(m);
        ASSERT_EQ(back.size(), v.size());
        for (std::size_t r = 0; r < rows; ++r) {
          float range = 0.0f;
          for (std::size_t j = 0; j < cols / 2; ++j) range = std::max(range, std::fabs(v[r * cols / 2 + j].to_float()));
          for (std::size_t j = 0; j < cols / 2; ++j)
            ASSERT_NEAR(back[r * cols / 2 + j].to_float(), v[r * cols / 2 + j].to_float(),
                        range / 254 * 1.01f + std::fabs(v[r * cols / 2 + j].to_float()) / 512);  // + fp16 rounding
        }
        EXPECT_EQ(torch_sparse24::export_metadata(m.positions(), 16), meta.bytes);
      }
    }
}

TEST(torch_sparse24, groups_with_fewer_than_two_non_zeros) {
  const std::map<std::string, array> golden = load_golden();
  for (const char* tag : {"f16", "bf16", "i8"}) {
    const std::string name = std::string(tag) + "_64x128_fewer";
    SCOPED_TRACE(name);
    const array& dense = golden.at(name + "_dense");
    const array& values = golden.at(name + "_values");
    const array& meta = golden.at(name + "_meta");
    const std::size_t rows = dense.rows, cols = dense.cols;
    const unsigned bits = dense.dtype == "i8" ? 32 : 16;
    std::vector<float> w(rows * cols);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = element(dense, i);
    // PyTorch's metadata read by lowbit, with PyTorch's values, is the dense matrix (as values: its
    // zeros are +0 or -0, a product of the generator's mask).
    const sparse24_positions theirs = torch_sparse24::import_metadata(meta.bytes.data(), rows, cols, bits);
    std::vector<float> rebuilt(rows * cols, 0.0f);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < cols / 2; ++j) {
        const unsigned nibble = theirs.get(r, j / 2);
        const std::size_t k = j / 2 * 4 + (j % 2 ? nibble >> 2 : nibble & 3u);
        rebuilt[r * cols + k] = element(values, r * cols / 2 + j);
      }
    EXPECT_EQ(rebuilt, w);
    // lowbit's positions: PyTorch's wherever a group holds two non-zeros; elsewhere both keep every non-zero.
    const sparse24_positions ours = find_sparse24_positions(w.data(), rows, cols, cols);
    std::size_t fewer = 0, differ = 0;
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t g = 0; g < cols / 4; ++g) {
        unsigned nonzero = 0, mask = 0;
        for (unsigned i = 0; i < 4; ++i)
          if (w[r * cols + 4 * g + i] != 0.0f) ++nonzero, mask |= 1u << i;
        const unsigned a = ours.get(r, g), b = theirs.get(r, g);
        const unsigned kept_a = (1u << (a & 3u)) | (1u << (a >> 2)), kept_b = (1u << (b & 3u)) | (1u << (b >> 2));
        EXPECT_EQ(kept_a & mask, mask) << r << " " << g;
        EXPECT_EQ(kept_b & mask, mask) << r << " " << g;
        if (nonzero == 2) {
          EXPECT_EQ(a, b) << r << " " << g;
        }
        fewer += nonzero < 2;
        differ += a != b;
      }
    EXPECT_GT(fewer, rows * cols / 4 / 4);  // the data holds such groups (about 5 in 9)
    EXPECT_GT(differ, 0u);                  // and the two rules differ on some of them
    // lowbit's export of its own positions reads back as them.
    EXPECT_EQ(torch_sparse24::import_metadata(torch_sparse24::export_metadata(ours, bits).data(), rows, cols, bits).nibbles,
              ours.nibbles);
    if (bits == 32) {
      const auto* v = reinterpret_cast<const int8_t*>(values.bytes.data());
      EXPECT_EQ(sparse24_to_dense(torch_sparse24::import_int8(v, meta.bytes.data(), rows, cols)), w);
    }
  }
}

TEST(torch_sparse24, bad_metadata_and_shapes_are_refused) {
  const std::map<std::string, array> golden = load_golden();
  const array& meta = golden.at("f16_64x128_meta");
  std::vector<uint8_t> bad = meta.bytes;
  bad[10] = static_cast<uint8_t>((bad[10] & 0xF0) | 0x5);  // positions (1, 1)
  EXPECT_THROW(torch_sparse24::import_metadata(bad.data(), 64, 128, 16), lowbit::error);
  bad = meta.bytes;
  bad[3] = static_cast<uint8_t>((bad[3] & 0x0F) | 0x20);  // high nibble 0b0010: positions (2, 0)
  EXPECT_THROW(torch_sparse24::import_metadata(bad.data(), 64, 128, 16), lowbit::error);
  EXPECT_THROW(torch_sparse24::import_metadata(meta.bytes.data(), 48, 128, 16), lowbit::error);  // rows % 32
  EXPECT_THROW(torch_sparse24::import_metadata(meta.bytes.data(), 64, 112, 16), lowbit::error);  // cols % 32
  EXPECT_THROW(torch_sparse24::import_metadata(nullptr, 64, 128, 16), lowbit::error);
  EXPECT_THROW(torch_sparse24::import_metadata(meta.bytes.data(), 64, 128, 8), lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
