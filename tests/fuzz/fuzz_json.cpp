// libFuzzer harness: the JSON parser on arbitrary text (values read back as integers and doubles).
#include <cstddef>
#include <cstdint>

#include "lowbit/interop/json.hpp"

namespace {
void walk(const lowbit::interop::json_value& v, int depth) {
  using kind = lowbit::interop::json_value::kind;
  if (v.is(kind::number)) {
    try {
      (void)v.as_u64("n");
    } catch (const lowbit::error&) {
    }
    (void)v.as_double("n");
  }
  for (const auto& item : v.items) walk(item, depth + 1);
  for (const auto& member : v.members) walk(member.second, depth + 1);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  try {
    walk(lowbit::interop::parse_json(reinterpret_cast<const char*>(data), size), 0);
  } catch (const lowbit::error&) {
  }
  return 0;
}
