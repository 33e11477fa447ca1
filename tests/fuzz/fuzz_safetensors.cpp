// libFuzzer harness: the safetensors reader on arbitrary bytes; every tensor it accepts is read
// to its last byte, and the file is written back and read again with the same tensors.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "lowbit/interop/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace lowbit::interop;
  try {
    const safetensors_file f = safetensors_file::parse(data, size);
    safetensors_writer w;
    unsigned sum = 0;
    for (const st_tensor& t : f.tensors()) {
      for (std::size_t i = 0; i < t.bytes; ++i) sum += t.data[i];
      w.add(t.name, t.dtype, t.shape, t.data, t.bytes);
    }
    for (const auto& kv : f.metadata()) w.add_metadata(kv.first, kv.second);
    const std::string bytes = w.bytes();
    const safetensors_file back = safetensors_file::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (back.tensors().size() != f.tensors().size() || sum == 0xFFFFFFFFu) std::abort();  // round trip must hold
  } catch (const lowbit::error&) {
  }
  return 0;
}
