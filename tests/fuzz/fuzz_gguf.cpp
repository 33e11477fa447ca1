// libFuzzer harness: the GGUF reader on arbitrary bytes; every tensor it accepts is dequantized
// (the ggml types lowbit reads) or imported into a lowbit matrix, and the file is rebuilt by the
// writer and read again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "lowbit/interop/gguf.hpp"

namespace {
using namespace lowbit::interop;

template <class Scheme>
void import(const gguf_tensor& t) {
  try {
    (void)import_gguf<Scheme>(t);
  } catch (const lowbit::error&) {
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  try {
    const gguf_file f = gguf_file::parse(data, size);
    gguf_writer w(f.alignment());
    for (const auto& kv : f.metadata())
      if (kv.first != "general.alignment" || f.alignment() == 32) w.add_metadata(kv.first, kv.second);
    for (const gguf_tensor& t : f.tensors()) {
      w.add_tensor(t.name, t.type, t.dims, t.data, t.bytes);
      const std::size_t elements = t.rows() * t.cols();
      if (elements > (std::size_t(1) << 22)) continue;  // the bytes are there, but keep each run short
      std::vector<float> out(elements);
      try {
        dequantize_ggml(t.type, t.data, t.bytes, elements, out.data());
      } catch (const lowbit::error&) {
      }
      switch (t.type) {
        case ggml_type::q4_0: import<ggml_scheme::q4_0>(t); break;
        case ggml_type::q8_0: import<ggml_scheme::q8_0>(t); break;
        case ggml_type::iq4_nl: import<ggml_scheme::iq4_nl>(t); break;
        case ggml_type::mxfp4: import<ggml_scheme::mxfp4>(t); break;
        default: break;
      }
    }
    const std::string bytes = w.bytes();
    const gguf_file back = gguf_file::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (back.tensors().size() != f.tensors().size()) std::abort();  // the writer's output must read back
  } catch (const lowbit::error&) {
  }
  return 0;
}
