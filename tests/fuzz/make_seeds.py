#!/usr/bin/env python3
"""Seed corpus for the fuzzers (tests/fuzz/corpus/<name>/), cut from the interop golden data
(tests/data/interop, made by tests/data/gen/gen_interop.py and gen_bnb.py) so that every seed is
a small, valid file that the real tools wrote. Run from the repository root after those."""
import os
import numpy as np
import gguf
from safetensors.numpy import load_file, save_file

D = "tests/data/interop/"
C = "tests/fuzz/corpus/"
for name in ("json", "safetensors", "gguf", "checkpoint"):
    os.makedirs(C + name, exist_ok=True)

# json: the headers of real safetensors files, and a bitsandbytes quant state.
for src in ("dtypes.safetensors", "awq.safetensors"):
    raw = open(D + src, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    open(C + "json/" + src.replace(".safetensors", ".json"), "wb").write(raw[8:8 + n])
bnb = load_file(D + "bnb.safetensors")
open(C + "json/bnb_state.json", "wb").write(bnb["nf4_dq_f32.weight.quant_state.bitsandbytes__nf4"].tobytes())

# safetensors: the every-dtype file.
open(C + "safetensors/dtypes.safetensors", "wb").write(open(D + "dtypes.safetensors", "rb").read())

# gguf: one small file per block type, one row of 64 elements, with metadata.
rng = np.random.default_rng(1)
for qtype in (gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.MXFP4,
              gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.F16):
    path = C + f"gguf/{qtype.name.lower()}.gguf"
    w = gguf.GGUFWriter(path, "seed")
    w.add_array("seed.tokens", ["a", "b"])
    x = rng.standard_normal((2, 64)).astype(np.float32)
    q = x.astype(np.float16) if qtype == gguf.GGMLQuantizationType.F16 else gguf.quants.quantize(x, qtype)
    w.add_tensor("w", q, raw_dtype=qtype)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

# checkpoint: a GPTQ layer, an AWQ layer and a double-quantized NF4 weight, each cut small.
g = load_file(D + "gptq.safetensors")
save_file({k.replace("plain", "l"): v for k, v in g.items() if k.startswith("plain.") and not k.endswith("dequant")},
          C + "checkpoint/gptq.safetensors")
a = load_file(D + "awq.safetensors")
save_file({k: v for k, v in a.items() if k.startswith("layer.") and not k.endswith("dequant")}, C + "checkpoint/awq.safetensors")
save_file({k.replace("nf4_dq_f32.", ""): v for k, v in bnb.items() if k.startswith("nf4_dq_f32.weight")},
          C + "checkpoint/bnb_nf4.safetensors")
save_file({k.replace("fp4_f32.", ""): v for k, v in bnb.items() if k.startswith("fp4_f32.weight")},
          C + "checkpoint/bnb_fp4.safetensors")
# lowbit's own layout (interop/quantized_safetensors.hpp): a 2 x 64 int4 matrix, fp16 scales per 32.
save_file({"m.codes": rng.integers(0, 256, (2, 32), dtype=np.uint8),
           "m.scales": np.full((2, 2), 0.5, dtype=np.float16)}, C + "checkpoint/lowbit_int4.safetensors",
          metadata={"lowbit.m": "int4,f16,64,32"})
