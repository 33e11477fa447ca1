// BERT uncased WordPiece tokenization (what all-MiniLM-L6-v2's tokenizer does), from the model's
// vocab.txt, without ICU: the Unicode knowledge it needs is a few small tables below.
//
// Steps, as Hugging Face's BertNormalizer + BertPreTokenizer + WordPiece run them:
//  1. clean: drop NUL, U+FFFD and control/format characters; every whitespace becomes a space;
//  2. put spaces around CJK ideographs (each becomes a word of its own);
//  3. strip accents (canonical decomposition, then drop the combining marks), then lowercase;
//  4. split on whitespace, and on punctuation with each punctuation character a word of its own;
//  5. each word: greedy longest-match-first wordpieces, continuations prefixed "##"; a word that
//     cannot be covered, or longer than 100 characters, becomes [UNK];
//  6. [CLS] wordpieces [SEP], truncated to max_tokens (256 for this model, as sentence-transformers).
//
// What the tables cover: lowercasing of ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic
// capitals; accent stripping of Latin-1 and Latin Extended-A letters, Greek tonos and dialytika,
// Cyrillic Й and Ё, kana (han)dakuten, and the combining-mark blocks; punctuation of ASCII,
// Latin-1, General Punctuation, CJK and the fullwidth forms. Not handled (ICU would): accented letters of other blocks (Latin Extended-B
// and Additional, polytonic Greek, Vietnamese), Hangul syllables (NFD splits them into jamo),
// lowercasings beyond the simple ones, punctuation and format characters of other scripts, and
// unassigned code points. Invalid UTF-8 bytes are dropped (U+FFFD is dropped too).
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace minilm {

namespace unicode {

/// Decodes UTF-8; an invalid or truncated sequence gives U+FFFD for its first byte.
inline std::vector<char32_t> decode_utf8(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const std::size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    char32_t c = n == 1 ? b : n == 2 ? (b & 0x1Fu) : n == 3 ? (b & 0x0Fu) : (b & 0x07u);
    bool ok = n != 0 && i + n <= s.size();
    for (std::size_t j = 1; ok && j < n; ++j) {
      const auto cont = static_cast<unsigned char>(s[i + j]);
      ok = (cont & 0xC0u) == 0x80u;
      c = (c << 6) | (cont & 0x3Fu);
    }
    // Overlong forms and surrogates are invalid too.
    ok = ok && !(n == 2 && c < 0x80) && !(n == 3 && c < 0x800) && !(n == 4 && (c < 0x10000 || c > 0x10FFFF)) &&
         !(c >= 0xD800 && c <= 0xDFFF);
    out.push_back(ok ? c : char32_t(0xFFFD));
    i += ok ? n : 1;
  }
  return out;
}

inline void append_utf8(std::string& s, char32_t c) {
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (c >> 18));
    s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
}

inline bool in(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

/// Unicode White_Space (what Rust's char::is_whitespace tests; tab, newline and return included).
inline bool is_whitespace(char32_t c) {
  return c == ' ' || in(c, 0x09, 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 || in(c, 0x2000, 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/// Control (Cc), format (Cf, the common ones) and private-use characters, which cleaning drops;
/// tab, newline and return are whitespace instead.
inline bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  return c < 0x20 || in(c, 0x7F, 0x9F) || c == 0xAD || in(c, 0x600, 0x605) || c == 0x61C || c == 0x6DD ||
         c == 0x70F || c == 0x180E || in(c, 0x200B, 0x200F) || in(c, 0x202A, 0x202E) || in(c, 0x2060, 0x2064) ||
         in(c, 0x2066, 0x206F) || c == 0xFEFF || in(c, 0xFFF9, 0xFFFB) || in(c, 0xE000, 0xF8FF) ||
         in(c, 0xE0000, 0xE007F) || in(c, 0xF0000, 0x10FFFF);
}

/// CJK ideographs, the ranges BERT separates.
inline bool is_cjk(char32_t c) {
  return in(c, 0x4E00, 0x9FFF) || in(c, 0x3400, 0x4DBF) || in(c, 0x20000, 0x2A6DF) || in(c, 0x2A700, 0x2B73F) ||
         in(c, 0x2B740, 0x2B81F) || in(c, 0x2B820, 0x2CEAF) || in(c, 0xF900, 0xFAFF) || in(c, 0x2F800, 0x2FA1F);
}

/// Nonspacing combining marks (Mn) of the combining blocks: what accent stripping drops.
inline bool is_combining_mark(char32_t c) {
  return in(c, 0x300, 0x36F) || in(c, 0x483, 0x487) || in(c, 0x1AB0, 0x1AFF) || in(c, 0x1DC0, 0x1DFF) ||
         in(c, 0x20D0, 0x20DC) || c == 0x20E1 || in(c, 0x20E5, 0x20F0) || in(c, 0x3099, 0x309A) ||
         in(c, 0xFE20, 0xFE2F);
}

/// BERT's punctuation: every ASCII non-alphanumeric printable character ($, +, <, ^, ` and | too),
/// and Unicode's P* categories in the blocks listed in the file comment.
inline bool is_punctuation(char32_t c) {
  if (c < 0x80) return in(c, 33, 47) || in(c, 58, 64) || in(c, 91, 96) || in(c, 123, 126);
  return c == 0xA1 || c == 0xA7 || c == 0xAB || c == 0xB6 || c == 0xB7 || c == 0xBB || c == 0xBF ||
         c == 0x37E || c == 0x387 ||
         (in(c, 0x2010, 0x205E) && !in(c, 0x2028, 0x202F) && c != 0x2044 && c != 0x2052) ||  // 2044, 2052: math
         in(c, 0x3001, 0x3003) || in(c, 0x3008, 0x3011) || in(c, 0x3014, 0x301F) || c == 0x3030 || c == 0x303D ||
         c == 0x30A0 || c == 0x30FB || in(c, 0xFE10, 0xFE19) || in(c, 0xFE30, 0xFE52) || in(c, 0xFE54, 0xFE61) ||
         c == 0xFE63 || c == 0xFE68 || c == 0xFE6A || c == 0xFE6B ||
         (in(c, 0xFF01, 0xFF0F) && c != 0xFF04 && c != 0xFF0B) || in(c, 0xFF1A, 0xFF1B) || in(c, 0xFF1F, 0xFF20) ||
         in(c, 0xFF3B, 0xFF3D) || c == 0xFF3F || c == 0xFF5B || c == 0xFF5D || in(c, 0xFF5F, 0xFF65);
}

/// The base letter of a precomposed Latin-1 / Latin Extended-A letter (U+00C0 .. U+017F), or 0 when
/// it has no canonical decomposition (Æ, Ø, ß, Đ, Ł, Œ, ...).
inline char32_t latin_base(char32_t c) {
  static const char table[] =
      "AAAAAA-CEEEEIIII" "-NOOOOO--UUUUY--" "aaaaaa-ceeeeiiii" "-nooooo--uuuuy-y"   // U+00C0 .. U+00FF
      "AaAaAaCcCcCcCcDd" "--EeEeEeEeEeGgGg" "GgGgHh--IiIiIiIi" "I---JjKk-LlLlLl-"   // U+0100 .. U+013F
      "---NnNnNn---OoOo" "Oo--RrRrRrSsSsSs" "SsTtTt--UuUuUuUu" "UuUuWwYyYZzZzZz-";  // U+0140 .. U+017F
  if (!in(c, 0xC0, 0x17F)) return 0;
  const char base = table[c - 0xC0];
  return base == '-' ? 0 : static_cast<char32_t>(base);
}

/// The base letter of a Greek letter with tonos or dialytika (U+0386 .. U+03CE), or 0.
inline char32_t greek_base(char32_t c) {
  switch (c) {
    case 0x386: return 0x391;  // Ά
    case 0x388: return 0x395;  // Έ
    case 0x389: return 0x397;  // Ή
    case 0x38A: case 0x3AA: return 0x399;  // Ί Ϊ
    case 0x38C: return 0x39F;  // Ό
    case 0x38E: case 0x3AB: return 0x3A5;  // Ύ Ϋ
    case 0x38F: return 0x3A9;  // Ώ
    case 0x3AC: return 0x3B1;  // ά
    case 0x3AD: return 0x3B5;  // έ
    case 0x3AE: return 0x3B7;  // ή
    case 0x390: case 0x3AF: case 0x3CA: return 0x3B9;  // ΐ ί ϊ
    case 0x3CC: return 0x3BF;  // ό
    case 0x3B0: case 0x3CB: case 0x3CD: return 0x3C5;  // ΰ ϋ ύ
    case 0x3CE: return 0x3C9;  // ώ
    default: return 0;
  }
}

/// The unvoiced kana of a hiragana / katakana with a (han)dakuten, which NFD splits off as a
/// combining mark (が -> か + U+3099), or 0.
inline char32_t kana_base(char32_t c) {
  const char32_t katakana = c >= 0x30A0 ? 0x60 : 0;  // katakana mirror hiragana 0x60 higher
  const char32_t h = c - katakana;
  if (in(h, 0x304C, 0x3062) && h % 2 == 0) return c - 1;         // が ... ぢ
  if (h == 0x3065 || h == 0x3067 || h == 0x3069) return c - 1;  // づ で ど
  if (in(h, 0x3070, 0x307D)) {                                  // ば ぱ ... ぼ ぽ
    const char32_t r = (h - 0x306F) % 3;
    return r == 0 ? 0 : c - r;
  }
  if (h == 0x3094) return 0x3046 + katakana;  // ゔ ヴ
  if (in(c, 0x30F7, 0x30FA)) return c - 8;    // ヷ ヸ ヹ ヺ
  return 0;
}

/// Accent stripping of one character: NFD, then combining marks dropped (0: drop it).
inline char32_t strip_accent(char32_t c) {
  if (is_combining_mark(c)) return 0;
  if (const char32_t base = latin_base(c)) return base;
  if (const char32_t base = greek_base(c)) return base;
  if (in(c, 0x3040, 0x30FF))
    if (const char32_t base = kana_base(c)) return base;
  switch (c) {  // Cyrillic letters with a canonical decomposition that Russian uses
    case 0x419: return 0x418;  // Й -> И
    case 0x439: return 0x438;  // й -> и
    case 0x401: return 0x415;  // Ё -> Е
    case 0x451: return 0x435;  // ё -> е
    default: return c;
  }
}

/// Simple lowercase mapping for the blocks in the file comment; other characters are unchanged.
inline char32_t to_lower(char32_t c) {
  if (in(c, 'A', 'Z')) return c + 32;
  if (c < 0xC0) return c;
  if (in(c, 0xC0, 0xDE) && c != 0xD7) return c + 32;
  if ((in(c, 0x100, 0x137) || in(c, 0x14A, 0x177)) && c % 2 == 0) return c + 1;
  if ((in(c, 0x139, 0x148) || in(c, 0x179, 0x17E)) && c % 2 == 1) return c + 1;
  if (c == 0x178) return 0xFF;
  if (in(c, 0x391, 0x3AB) && c != 0x3A2) return c + 32;  // Greek capitals
  if (in(c, 0x410, 0x42F)) return c + 32;                 // Cyrillic А..Я
  if (in(c, 0x400, 0x40F)) return c + 80;                 // Cyrillic Ѐ..Џ
  return c;
}

}  // namespace unicode

/// WordPiece tokenizer over a BERT vocab.txt (one token per line; the id is the line number).
class wordpiece_tokenizer {
 public:
  static constexpr std::size_t max_word_chars = 100;  // longer words become [UNK], as in BERT

  explicit wordpiece_tokenizer(const std::string& vocab_path, std::size_t max_tokens = 256) : max_tokens_(max_tokens) {
    std::ifstream in(vocab_path);
    if (!in) throw std::runtime_error("cannot open " + vocab_path);
    std::string line;
    for (int id = 0; std::getline(in, line); ++id) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      vocab_.emplace(line, id);
    }
    cls_ = id_of("[CLS]");
    sep_ = id_of("[SEP]");
    unk_ = id_of("[UNK]");
  }

  std::size_t vocab_size() const noexcept { return vocab_.size(); }

  /// Token ids of one text: [CLS] wordpieces [SEP], at most max_tokens of them.
  std::vector<int32_t> encode(const std::string& text) const {
    std::vector<int32_t> ids{cls_};
    for (const std::u32string& word : words(text)) {
      wordpieces(word, ids);
      if (ids.size() >= max_tokens_ - 1) break;
    }
    if (ids.size() > max_tokens_ - 1) ids.resize(max_tokens_ - 1);
    ids.push_back(sep_);
    return ids;
  }

 private:
  int32_t id_of(const std::string& token) const {
    const auto it = vocab_.find(token);
    if (it == vocab_.end()) throw std::runtime_error("vocab.txt has no " + token);
    return it->second;
  }

  /// Steps 1-4: normalized words.
  static std::vector<std::u32string> words(const std::string& text) {
    std::vector<std::u32string> out;
    std::u32string word;
    const auto flush = [&] {
      if (!word.empty()) out.push_back(std::move(word));
      word.clear();
    };
    for (char32_t c : unicode::decode_utf8(text)) {
      if (c == 0 || c == 0xFFFD || unicode::is_control(c)) continue;
      if (unicode::is_whitespace(c)) {
        flush();
        continue;
      }
      c = unicode::strip_accent(c);
      if (c == 0) continue;
      c = unicode::to_lower(c);
      if (unicode::is_cjk(c) || unicode::is_punctuation(c)) {  // a word of its own
        flush();
        out.push_back(std::u32string(1, c));
        continue;
      }
      word += c;
    }
    flush();
    return out;
  }

  /// Step 5: appends the wordpieces of one word (or [UNK]).
  void wordpieces(const std::u32string& word, std::vector<int32_t>& ids) const {
    if (word.size() > max_word_chars) {
      ids.push_back(unk_);
      return;
    }
    std::vector<int32_t> pieces;
    for (std::size_t start = 0; start < word.size();) {
      // Longest prefix of word[start..] in the vocabulary; a continuation carries "##".
      int32_t found = -1;
      std::size_t end = word.size();
      for (; end > start; --end) {
        std::string piece = start > 0 ? "##" : "";
        for (std::size_t i = start; i < end; ++i) unicode::append_utf8(piece, word[i]);
        const auto it = vocab_.find(piece);
        if (it != vocab_.end()) {
          found = it->second;
          break;
        }
      }
      if (found < 0) {  // no piece fits: the whole word is unknown
        ids.push_back(unk_);
        return;
      }
      pieces.push_back(found);
      start = end;
    }
    ids.insert(ids.end(), pieces.begin(), pieces.end());
  }

  std::unordered_map<std::string, int32_t> vocab_;
  std::size_t max_tokens_;
  int32_t cls_ = 0, sep_ = 0, unk_ = 0;
};

}  // namespace minilm
