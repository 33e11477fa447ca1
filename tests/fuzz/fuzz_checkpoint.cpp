// libFuzzer harness: the checkpoint importers (GPTQ, AWQ, bitsandbytes, lowbit's own matrices) on
// arbitrary safetensors files: every prefix that names a qweight, a bitsandbytes state or a
// lowbit matrix is imported (GPTQ / AWQ with several group sizes and both GPTQ formats).
#include <cstddef>
#include <cstdint>
#include <string>

#include "lowbit/interop/awq.hpp"
#include "lowbit/interop/bnb.hpp"
#include "lowbit/interop/gptq.hpp"
#include "lowbit/interop/quantized_safetensors.hpp"

namespace {
template <class F>
void attempt(F&& f) {
  try {
    f();
  } catch (const lowbit::error&) {
  }
}
bool ends_with(const std::string& s, const std::string& tail, std::string& head) {
  if (s.size() < tail.size() || s.compare(s.size() - tail.size(), tail.size(), tail) != 0) return false;
  head = s.substr(0, s.size() - tail.size());
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace lowbit::interop;
  try {
    const safetensors_file f = safetensors_file::parse(data, size);
    for (const auto& kv : f.metadata()) {
      std::string name;
      if (kv.first.rfind("lowbit.", 0) != 0) continue;
      name = kv.first.substr(7);
      attempt([&] { (void)load_quantized<lowbit::scheme<lowbit::int4, lowbit::fp16>>(f, name); });
      attempt([&] { (void)load_quantized<lowbit::scheme<lowbit::uint4, lowbit::bf16, true>>(f, name); });
      attempt([&] { (void)view_quantized<lowbit::mx::fp4>(f, name); });
    }
    for (const st_tensor& t : f.tensors()) {
      std::string prefix;
      if (ends_with(t.name, ".qweight", prefix)) {
        for (std::size_t g : {0, 32, 64, 128}) {
          attempt([&] { (void)import_gptq<gptq_int4>(f, prefix, g, gptq_format::v1); });
          attempt([&] { (void)import_gptq<gptq_int8>(f, prefix, g, gptq_format::v2); });
          attempt([&] { (void)import_awq(f, prefix, g); });
        }
      }
      if (ends_with(t.name, ".quant_state.bitsandbytes__nf4", prefix)) attempt([&] { (void)import_bnb<bnb_nf4>(f, prefix); });
      if (ends_with(t.name, ".quant_state.bitsandbytes__fp4", prefix)) attempt([&] { (void)import_bnb<bnb_fp4_scheme>(f, prefix); });
    }
  } catch (const lowbit::error&) {
  }
  return 0;
}
