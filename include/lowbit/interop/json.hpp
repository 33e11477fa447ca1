/// \file
/// \brief A small, strict JSON parser for file headers (safetensors): untrusted text in, a tree out.
///
/// RFC 8259 grammar; nesting depth and the number of values are limited (a value takes ~100
/// bytes, so a hostile 100 MB header must not become gigabytes), strings are checked for escapes and control
/// characters, and numbers keep their text so that 64-bit offsets are read exactly (as_u64).
/// Anything else is a lowbit::error naming the position.
#pragma once

#include <cstddef>
#include <cstdint>
#include <locale>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace lowbit {
namespace interop {

struct json_value {
  enum class kind { null, boolean, number, string, array, object };
  kind type = kind::null;
  bool boolean = false;
  std::string text;  ///< a string's value, or a number's text as written
  std::vector<json_value> items;                            ///< array elements
  std::vector<std::pair<std::string, json_value>> members;  ///< object members, in file order

  bool is(kind k) const noexcept { return type == k; }

  /// The member named `key`, or null if there is none (or this is not an object).
  const json_value* find(const std::string& key) const noexcept {
    if (type != kind::object) return nullptr;
    for (const auto& m : members)
      if (m.first == key) return &m.second;
    return nullptr;
  }

  /// A non-negative integer without sign, fraction or exponent that fits in 64 bits.
  uint64_t as_u64(const char* what) const {
    LOWBIT_CHECK(type == kind::number, what << ": expected a number");
    LOWBIT_CHECK(!text.empty() && text.size() <= 20, what << ": '" << text << "' is not a 64-bit unsigned integer");
    uint64_t value = 0;
    for (char c : text) {
      LOWBIT_CHECK(c >= '0' && c <= '9', what << ": '" << text << "' is not a non-negative integer");
      const uint64_t digit = static_cast<uint64_t>(c - '0');
      LOWBIT_CHECK(value <= (UINT64_MAX - digit) / 10, what << ": " << text << " overflows 64 bits");
      value = value * 10 + digit;
    }
    return value;
  }

  /// A number as the nearest double (read in the "C" locale, whatever the program's locale is).
  double as_double(const char* what) const {
    LOWBIT_CHECK(type == kind::number, what << ": expected a number");
    std::istringstream in(text);
    in.imbue(std::locale::classic());
    double value = 0;
    in >> value;
    LOWBIT_CHECK(!in.fail(), what << ": '" << text << "' is out of range for a double");
    return value;
  }

  const std::string& as_string(const char* what) const {
    LOWBIT_CHECK(type == kind::string, what << ": expected a string");
    return text;
  }
};

namespace detail {

class json_parser {
 public:
  json_parser(const char* text, std::size_t size, std::size_t max_depth, std::size_t max_values) noexcept
      : p_(text), end_(text + size), begin_(text), max_depth_(max_depth), values_left_(max_values) {}

  json_value parse_document() {
    json_value v = parse_value(0);
    skip_space();
    fail_unless(p_ == end_, "unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    raise_error(std::string("JSON: ") + what + " at offset " + std::to_string(p_ - begin_));
  }
  void fail_unless(bool ok, const char* what) const {
    if (!ok) fail(what);
  }
  void skip_space() noexcept {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  void expect_word(const char* word) {
    for (; *word; ++word, ++p_) fail_unless(p_ != end_ && *p_ == *word, "invalid literal");
  }

  json_value parse_value(std::size_t depth) {
    fail_unless(depth <= max_depth_, "nesting too deep");
    fail_unless(values_left_ > 0, "too many values");
    --values_left_;
    skip_space();
    fail_unless(p_ != end_, "unexpected end of text");
    json_value v;
    switch (*p_) {
      case '{': parse_object(v, depth); break;
      case '[': parse_array(v, depth); break;
      case '"': v.type = json_value::kind::string; v.text = parse_string(); break;
      case 't': expect_word("true"); v.type = json_value::kind::boolean; v.boolean = true; break;
      case 'f': expect_word("false"); v.type = json_value::kind::boolean; break;
      case 'n': expect_word("null"); break;
      default: v.type = json_value::kind::number; v.text = parse_number(); break;
    }
    return v;
  }

  void parse_object(json_value& v, std::size_t depth) {
    v.type = json_value::kind::object;
    ++p_;
    skip_space();
    if (p_ != end_ && *p_ == '}') { ++p_; return; }
    for (;;) {
      skip_space();
      fail_unless(p_ != end_ && *p_ == '"', "expected a member name");
      std::string key = parse_string();
      skip_space();
      fail_unless(p_ != end_ && *p_ == ':', "expected ':'");
      ++p_;
      v.members.emplace_back(std::move(key), parse_value(depth + 1));
      skip_space();
      fail_unless(p_ != end_, "unterminated object");
      if (*p_ == ',') { ++p_; continue; }
      fail_unless(*p_ == '}', "expected ',' or '}'");
      ++p_;
      return;
    }
  }

  void parse_array(json_value& v, std::size_t depth) {
    v.type = json_value::kind::array;
    ++p_;
    skip_space();
    if (p_ != end_ && *p_ == ']') { ++p_; return; }
    for (;;) {
      v.items.push_back(parse_value(depth + 1));
      skip_space();
      fail_unless(p_ != end_, "unterminated array");
      if (*p_ == ',') { ++p_; continue; }
      fail_unless(*p_ == ']', "expected ',' or ']'");
      ++p_;
      return;
    }
  }

  std::string parse_number() {
    const char* start = p_;
    if (p_ != end_ && *p_ == '-') ++p_;
    fail_unless(p_ != end_ && is_digit(*p_), "invalid value");
    if (*p_ == '0') ++p_;
    else while (p_ != end_ && is_digit(*p_)) ++p_;
    if (p_ != end_ && *p_ == '.') {
      ++p_;
      fail_unless(p_ != end_ && is_digit(*p_), "invalid number fraction");
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      fail_unless(p_ != end_ && is_digit(*p_), "invalid number exponent");
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    return std::string(start, p_);
  }

  unsigned hex4() {
    unsigned value = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      fail_unless(p_ != end_, "unterminated \\u escape");
      const char c = *p_;
      const int digit = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      fail_unless(digit >= 0, "invalid \\u escape");
      value = value * 16 + static_cast<unsigned>(digit);
    }
    return value;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::string parse_string() {
    ++p_;  // the opening quote
    std::string out;
    for (;;) {
      fail_unless(p_ != end_, "unterminated string");
      const unsigned char c = static_cast<unsigned char>(*p_++);
      if (c == '"') return out;
      fail_unless(c >= 0x20, "control character in string");
      if (c != '\\') { out.push_back(static_cast<char>(c)); continue; }
      fail_unless(p_ != end_, "unterminated escape");
      const char e = *p_++;
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a high surrogate must be followed by a low one
            fail_unless(end_ - p_ >= 2 && p_[0] == '\\' && p_[1] == 'u', "unpaired surrogate");
            p_ += 2;
            const unsigned low = hex4();
            fail_unless(low >= 0xDC00 && low < 0xE000, "unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else {
            fail_unless(cp < 0xDC00 || cp >= 0xE000, "unpaired surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("invalid escape");
      }
    }
  }

  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

  const char* p_;
  const char* end_;
  const char* begin_;
  std::size_t max_depth_;
  std::size_t values_left_;
};

}  // namespace detail

/// Parses one JSON document (surrounding whitespace allowed); max_depth bounds the nesting and
/// max_values the number of values (arrays and objects count as one each, plus their elements).
inline json_value parse_json(const char* text, std::size_t size, std::size_t max_depth = 64,
                             std::size_t max_values = std::size_t(1) << 20) {
  return detail::json_parser(text, size, max_depth, max_values).parse_document();
}

/// `s` as a JSON string literal, quotes included.
inline std::string json_quote(const std::string& s) {
  static const char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      out += "\\u00";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace interop
}  // namespace lowbit
