#!/usr/bin/env python3
"""Golden data for lowbit's bitsandbytes import (tests/interop/test_bnb.cpp), made by bitsandbytes
itself on a CUDA GPU (bitsandbytes 0.50.2, PyTorch 2.11, an H200, the lent GPU machine).

For NF4 and FP4, with and without double quantization ("compress_statistics"), a float32 and a
float16 weight are quantized by bitsandbytes.functional.quantize_4bit (blocksize 64) and
dequantized by dequantize_4bit; the packed weight and its QuantState are saved as Hugging Face
transformers serializes them (QuantState.as_dict(packed=True): absmax, quant_map, nested_absmax,
nested_quant_map and the JSON state in an uint8 tensor) beside bitsandbytes' dequantized weight.

Run from the repository root on a machine with a GPU: python3 tests/data/gen/gen_bnb.py
"""
import json
import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F
from safetensors.torch import save_file

torch.manual_seed(20261125)
N, K = 16, 256
out = {}
for quant_type in ("nf4", "fp4"):
    for nested in (False, True):
        for dtype in (torch.float32, torch.float16):
            w = torch.randn(N, K, device="cuda") * 0.05
            w[0, :64] = 0.0    # an all-zero block
            w[1, 3] = 0.7      # an outlier
            w = w.to(dtype)
            packed, state = F.quantize_4bit(w, blocksize=64, compress_statistics=nested, quant_type=quant_type)
            dequant = F.dequantize_4bit(packed, state)
            name = f"{quant_type}{'_dq' if nested else ''}_{'f32' if dtype == torch.float32 else 'f16'}"
            out[name + ".weight"] = packed.cpu().contiguous()
            for key, value in state.as_dict(packed=True).items():
                out[name + ".weight." + key] = value.cpu().contiguous()
            out[name + ".dequant"] = dequant.cpu().contiguous()
            print(name, tuple(packed.shape), packed.dtype,
                  {k: (tuple(v.shape), str(v.dtype)) for k, v in state.as_dict(packed=True).items()})
            qs = [k for k in state.as_dict(packed=True) if k.startswith("quant_state")][0]
            print("  ", bytes(state.as_dict(packed=True)[qs].tolist()).decode())
out["x"] = torch.randn(3, K)
save_file(out, "bnb.safetensors")
print("bitsandbytes", bnb.__version__, "torch", torch.__version__, torch.cuda.get_device_name())
