// Shared by the dequantization tests: random quantized matrices and a bit-exact comparison of every
// ISA path against reference::dequantize_rows.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "lowbit/arch/dispatch.hpp"
#include "lowbit/kernels/dequantize.hpp"
#include "lowbit/kernels/reference/dequantize.hpp"

namespace lowbit_test {

template <class Scheme>
std::string scheme_name() {
  std::ostringstream s;
  s << lowbit::format_traits<typename Scheme::format>::name << "/" << lowbit::scale_traits<typename Scheme::scale_type>::name
    << (Scheme::has_zero ? "/zero" : "");
  return s.str();
}

/// A random scale of each type: mostly ordinary magnitudes of both signs, sometimes tiny ones
/// whose products are subnormal, sometimes huge ones whose products overflow.
template <class Scale>
Scale random_scale(std::mt19937& rng) {
  std::uniform_int_distribution<int> kind(0, 19);
  std::uniform_real_distribution<float> exponent(-12.0f, 4.0f);
  const int k = kind(rng);
  float s = std::exp2(exponent(rng)) * (rng() & 1 ? -1.0f : 1.0f);
  if (k == 0) s = 1e-39f * (rng() & 1 ? -1.0f : 1.0f);  // subnormal float
  if (k == 1) s = 3e-38f;
  if (k == 2) s = 1e37f;
  if (k == 3) s = 0.0f;
  if constexpr (std::is_same<Scale, lowbit::e8m0>::value) {
    std::uniform_int_distribution<int> code(0, 255);  // 0 is 2^-127 (subnormal), 255 NaN
    int c = code(rng);
    if (k < 15) c = 100 + c % 40;  // mostly ordinary exponents
    return lowbit::e8m0::from_bits(static_cast<uint8_t>(c));
  } else {
    return lowbit::scale_traits<Scale>::from_float(s);
  }
}

template <class Scheme>
lowbit::quantized_matrix<Scheme> random_matrix(std::size_t rows, std::size_t cols, std::size_t group_size,
                                               uint32_t seed) {
  lowbit::quantized_matrix<Scheme> q(rows, cols, group_size);
  std::mt19937 rng(seed);
  const std::size_t bytes = rows * q.row_bytes();
  for (std::size_t i = 0; i < bytes; ++i) q.codes()[i] = static_cast<uint8_t>(rng());
  for (std::size_t i = 0; i < q.shape().group_count(); ++i) {
    q.scales()[i] = random_scale<typename Scheme::scale_type>(rng);
    if (Scheme::has_zero) q.zeros()[i] = static_cast<uint8_t>(rng() % (1u << Scheme::bits));
  }
  return q;
}

template <class Out>
uint32_t bits_of(Out v) {
  if constexpr (std::is_same<Out, float>::value) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return b;
  } else {
    return v.bits;
  }
}
template <class Out>
bool is_nan(Out v) {
  if constexpr (std::is_same<Out, float>::value) {
    return std::isnan(v);
  } else {
    return (v.bits & 0x7FFF) > 0x7F80;
  }
}

template <class Out>
Out sentinel() {
  if constexpr (std::is_same<Out, float>::value) {
    return -12345.5f;
  } else {
    return lowbit::bf16::from_bits(0xABCD);
  }
}

/// Compares rows x cols of got and expected (both with leading dimension ld) bit for bit (NaN
/// matches NaN), and checks that the padding [cols, ld) of each row still holds the sentinel.
/// Returns an empty string or a description of the first mismatch.
template <class Out>
std::string compare(const std::vector<Out>& got, const std::vector<Out>& expected, std::size_t rows,
                    std::size_t cols, std::size_t ld) {
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t k = 0; k < ld; ++k) {
      const Out g = got[r * ld + k];
      const Out e = k < cols ? expected[r * ld + k] : sentinel<Out>();
      const bool same = bits_of(g) == bits_of(e) || (k < cols && is_nan(g) && is_nan(e));
      if (!same) {
        std::ostringstream s;
        s << "element (" << r << ", " << k << ")" << (k >= cols ? " (padding)" : "") << ": got 0x" << std::hex
          << bits_of(g) << " expected 0x" << bits_of(e);
        return s.str();
      }
    }
  }
  return {};
}

/// Runs dequantize_rows on every supported ISA (and both store policies) over rows
/// [row_begin, row_end) of a random matrix and compares with the reference.
template <class Scheme, class Out>
void check_all_paths(std::size_t rows, std::size_t cols, std::size_t group_size, uint32_t seed, std::size_t pad,
                     std::size_t row_begin = 0, std::size_t row_end = std::size_t(-1)) {
  if (row_end > rows) row_end = rows;
  const auto q = random_matrix<Scheme>(rows, cols, group_size, seed);
  const auto w = q.view();
  const std::size_t ld = cols + pad, n = row_end - row_begin;
  std::vector<Out> expected(n * ld, sentinel<Out>());
  lowbit::reference::dequantize_rows(w, row_begin, row_end, expected.data(), ld);
  for (lowbit::isa path : lowbit::supported_isas()) {
    for (lowbit::store_policy policy : {lowbit::store_policy::normal, lowbit::store_policy::streaming}) {
      // 64-byte aligned storage so that streaming is really used when ld keeps rows aligned.
      lowbit::aligned_buffer<Out> buffer(n * ld + 1);
      std::fill(buffer.begin(), buffer.end(), sentinel<Out>());
      lowbit::dispatch(path, [&](auto tag) {
        lowbit::dequantize_rows<decltype(tag)>(w, row_begin, row_end, buffer.data(), ld, policy);
      });
      std::vector<Out> got(buffer.begin(), buffer.begin() + n * ld);
      const std::string mismatch = compare(got, expected, n, cols, ld);
      ASSERT_TRUE(mismatch.empty()) << scheme_name<Scheme>() << " -> " << (std::is_same<Out, float>::value ? "f32" : "bf16")
                                    << " on " << lowbit::isa_name(path)
                                    << (policy == lowbit::store_policy::streaming ? " (streaming)" : "") << ": rows=" << rows
                                    << " cols=" << cols << " group_size=" << q.group_size() << " rows [" << row_begin
                                    << ", " << row_end << ") ld=" << ld << " seed=" << seed << ": " << mismatch;
      ASSERT_EQ(bits_of(buffer[n * ld]), bits_of(sentinel<Out>())) << "wrote past the last row";
    }
  }
}

/// The shapes every scheme is tested with: odd column counts, tail groups, group sizes 32, 64,
/// 128, odd ones and per-channel, padded and unpadded rows.
template <class Scheme>
void check_scheme(uint32_t base_seed) {
  const std::size_t cols_list[] = {1, 3, 17, 33, 63, 64, 65, 127, 128, 255, 256, 1000};
  uint32_t seed = base_seed;
  for (std::size_t cols : cols_list) {
    for (std::size_t group : {std::size_t(32), std::size_t(64), std::size_t(128), std::size_t(7), std::size_t(33),
                              std::size_t(0)}) {
      if (group > cols) continue;
      const std::size_t rows = 1 + (seed % 4);
      const std::size_t pad = (seed % 3 == 0) ? 0 : (seed % 3 == 1 ? 5 : 16 - cols % 16);
      check_all_paths<Scheme, float>(rows, cols, group, seed, pad);
      if (::testing::Test::HasFatalFailure()) return;
      check_all_paths<Scheme, lowbit::bf16>(rows, cols, group, seed + 1, pad);
      if (::testing::Test::HasFatalFailure()) return;
      seed += 2;
    }
  }
  // A sub-range of rows, and a wide row whose blocks all take the fast path.
  check_all_paths<Scheme, float>(7, 200, 32, seed, 3, 2, 5);
  check_all_paths<Scheme, float>(2, 4096, 128, seed + 1, 0);
  check_all_paths<Scheme, lowbit::bf16>(2, 4096, 64, seed + 2, 0);
}

}  // namespace lowbit_test
