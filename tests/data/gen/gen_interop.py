#!/usr/bin/env python3
"""Golden data for lowbit's interop readers (tests/interop/test_gguf.cpp, test_gptq_awq.cpp).

Made with the real tools from PyPI where they are the reference (pip install gguf safetensors
numpy): gguf.GGUFWriter writes the GGUF file and gguf.quants quantizes and dequantizes its
tensors; safetensors' numpy API writes every .safetensors file. GPTQ and AWQ packing and
dequantization follow the tools' reference code (AutoGPTQ's QuantLinear.pack and its torch
dequantization, AutoAWQ's pack with AWQ_ORDER and its dequantize), written here in numpy; the
dequantized weights are fp16, as those tools compute them.

Run from the repository root: python3 tests/data/gen/gen_interop.py
"""
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import save_file

OUT = "tests/data/interop/"
rng = np.random.default_rng(20261125)


def weights(n, k):
    w = rng.standard_normal((n, k)).astype(np.float32) * 0.05
    w[0, :32] = 0.0                       # an all-zero block
    w[1, 5] = 0.9                         # an outlier
    w[2, 40:72] = np.abs(w[2, 40:72])     # a block of one sign
    return w


def make_gguf():
    n, k = 16, 256
    path = OUT + "small.gguf"
    writer = gguf.GGUFWriter(path, "lowbit-test")
    writer.add_uint8("test.u8", 200)
    writer.add_int8("test.i8", -100)
    writer.add_uint16("test.u16", 60000)
    writer.add_int16("test.i16", -30000)
    writer.add_uint32("test.u32", 4000000000)
    writer.add_int32("test.i32", -2000000000)
    writer.add_float32("test.f32", 0.125)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "lowbit ✓")
    writer.add_uint64("test.u64", 2**63 + 5)
    writer.add_int64("test.i64", -(2**62))
    writer.add_float64("test.f64", -2.5)
    writer.add_array("test.array_i32", [1, -2, 3])
    writer.add_array("test.array_str", ["a", "bc", ""])
    reference = {}
    for name, qtype in [("w.q4_0", T.Q4_0), ("w.q4_1", T.Q4_1), ("w.q8_0", T.Q8_0), ("w.iq4_nl", T.IQ4_NL),
                        ("w.mxfp4", T.MXFP4), ("w.f16", T.F16), ("w.bf16", T.BF16), ("w.f32", T.F32)]:
        w = weights(n, k)
        if qtype == T.IQ4_NL:  # gguf has no IQ4_NL quantizer: random codes under random fp16 scales
            d = (rng.random((n, k // 32, 1)) * 0.01).astype(np.float16)
            qs = rng.integers(0, 256, (n, k // 32, 16), dtype=np.uint8)
            q = np.concatenate([d.view(np.uint8), qs], axis=-1).reshape(n, k // 32 * 18)
        elif qtype in (T.F16, T.F32):
            q = w.astype(np.float16 if qtype == T.F16 else np.float32)
        else:
            q = gguf.quants.quantize(w, qtype)
        writer.add_tensor(name, q, raw_dtype=qtype)
        reference[name] = gguf.quants.dequantize(q, qtype).astype(np.float32).reshape(n, k)
    for name, qtype, size in [("w.q4_k", T.Q4_K, 144), ("w.q5_k", T.Q5_K, 176), ("w.q6_k", T.Q6_K, 210)]:
        # gguf has no K-quant quantizers: random super-blocks with valid fp16 d (and dmin).
        blocks = rng.integers(0, 256, (n, k // 256, size), dtype=np.uint8)
        d = (rng.random((n, k // 256, 2)) * 0.01).astype(np.float16).view(np.uint8)
        if qtype == T.Q6_K:
            blocks[:, :, 208:210] = d[:, :, 0:2]
        else:
            blocks[:, :, 0:4] = d
        q = blocks.reshape(n, k // 256 * size)
        writer.add_tensor(name, q, raw_dtype=qtype)
        reference[name] = gguf.quants.dequantize(q, qtype).astype(np.float32).reshape(n, k)
    t3 = rng.standard_normal((2, 3, 32)).astype(np.float32)  # a 3-D tensor: dims 32, 3, 2
    writer.add_tensor("t.3d", t3)
    reference["t.3d"] = t3
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reference["x"] = rng.standard_normal((3, k)).astype(np.float32)
    save_file(reference, OUT + "small_gguf_reference.safetensors")


def pack_gptq(q, zeros, bits):
    """AutoGPTQ QuantLinear.pack: q [K, N] codes, zeros [G, N]; v1 stores zero - 1."""
    p = 32 // bits
    kk, n = q.shape
    qweight = np.zeros((kk // p, n), dtype=np.uint32)
    for j in range(p):
        qweight |= q[j::p, :].astype(np.uint32) << np.uint32(bits * j)
    z = (zeros - 1).astype(np.uint32)
    qzeros = np.zeros((zeros.shape[0], n // p), dtype=np.uint32)
    for j in range(p):
        qzeros |= z[:, j::p] << np.uint32(bits * j)
    return qweight.view(np.int32), qzeros.view(np.int32)


def quantize_groups(w_kn, group_of, groups, bits):
    """Asymmetric min-max quantization per (group, output), as GPTQ's quantizer does (zero >= 1 so
    that v1's zero - 1 stays a code)."""
    maxq = 2**bits - 1
    k, n = w_kn.shape
    scales = np.zeros((groups, n), dtype=np.float16)
    zeros = np.zeros((groups, n), dtype=np.int64)
    q = np.zeros((k, n), dtype=np.int64)
    for g in range(groups):
        rows = np.nonzero(group_of == g)[0]
        lo = np.minimum(w_kn[rows].min(axis=0), 0)
        hi = np.maximum(w_kn[rows].max(axis=0), 0)
        s = ((hi - lo) / maxq).astype(np.float16)
        s[s == 0] = np.float16(1)
        z = np.clip(np.round(-lo / s.astype(np.float32)), 1, maxq)
        scales[g], zeros[g] = s, z
        q[rows] = np.clip(np.round(w_kn[rows] / s.astype(np.float32)) + z, 0, maxq)
    return q, scales, zeros


def make_gptq():
    tensors = {}
    n, k, g = 48, 256, 64
    for name, act_order, bits in [("plain", False, 4), ("act_order", True, 4), ("int8", False, 8)]:
        w = rng.standard_normal((k, n)).astype(np.float32) * 0.05  # GPTQ works on W^T: [K, N]
        groups = k // g
        if act_order:
            perm = rng.permutation(k)              # the order GPTQ quantized the inputs in
            group_of = np.empty(k, dtype=np.int64)
            group_of[perm] = np.arange(k) // g
        else:
            group_of = np.arange(k) // g
        q, scales, zeros = quantize_groups(w, group_of, groups, bits)
        qweight, qzeros = pack_gptq(q, zeros, bits)
        tensors[name + ".qweight"] = qweight
        tensors[name + ".qzeros"] = qzeros
        tensors[name + ".scales"] = scales
        tensors[name + ".g_idx"] = group_of.astype(np.int32)
        # AutoGPTQ's dequantization: scales[g_idx] * (q - (stored_zero + 1)), in fp16.
        z = ((qzeros.view(np.uint32)[:, :, None] >> (bits * np.arange(32 // bits, dtype=np.uint32))) & (2**bits - 1))
        z = z.reshape(groups, n) + 1
        deq = scales[group_of] * (q - z[group_of]).astype(np.float16)
        tensors[name + ".dequant"] = np.ascontiguousarray(deq.T)  # [N, K]
    tensors["x"] = rng.standard_normal((2, k)).astype(np.float32)
    save_file(tensors, OUT + "gptq.safetensors")


def make_awq():
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    n, k, g = 64, 128, 32
    w = rng.standard_normal((k, n)).astype(np.float32) * 0.05
    groups = k // g
    q, scales, zeros = quantize_groups(w, np.arange(k) // g, groups, 4)
    zeros[0, :3] = 0  # AWQ stores zeros as they are: 0 is valid

    def pack(a):  # AutoAWQ: the word for columns 8j..8j+7 holds column 8j + order[i] in bits 4i
        out = np.zeros((a.shape[0], a.shape[1] // 8), dtype=np.uint32)
        for i in range(8):
            out |= a[:, np.arange(a.shape[1] // 8) * 8 + order[i]].astype(np.uint32) << np.uint32(4 * i)
        return out.view(np.int32)

    deq = (q - zeros[np.arange(k) // g]).astype(np.float16) * scales[np.arange(k) // g]  # AutoAWQ, fp16
    save_file({"layer.qweight": pack(q), "layer.qzeros": pack(zeros), "layer.scales": scales,
               "layer.dequant": np.ascontiguousarray(deq.T), "x": rng.standard_normal((2, k)).astype(np.float32)},
              OUT + "awq.safetensors")


def make_safetensors():
    """Every dtype the reader knows, with metadata, as the safetensors package writes them."""
    import ml_dtypes
    t = {
        "bool": np.array([True, False, True]),
        "u8": np.arange(5, dtype=np.uint8), "i8": np.array([-128, 0, 127], dtype=np.int8),
        "i16": np.array([-32768, 7], dtype=np.int16), "u16": np.array([65535], dtype=np.uint16),
        "f16": np.array([[1.5, -2.0], [65504.0, 0.0]], dtype=np.float16),
        "bf16": np.array([1.0, -3.5], dtype=ml_dtypes.bfloat16),
        "i32": np.array([-7, 1 << 30], dtype=np.int32), "u32": np.array([4000000000], dtype=np.uint32),
        "f32": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "f64": np.array([0.1], dtype=np.float64),
        "i64": np.array([-(2**40)], dtype=np.int64), "u64": np.array([2**63], dtype=np.uint64),
        "e4m3": np.array([1.0, -448.0, 0.015625], dtype=ml_dtypes.float8_e4m3fn),
        "e5m2": np.array([57344.0, -1.0], dtype=ml_dtypes.float8_e5m2),
        "scalar": np.array(3.0, dtype=np.float32), "empty": np.zeros((0, 4), dtype=np.float32),
    }
    save_file(t, OUT + "dtypes.safetensors", metadata={"format": "pt", "note": "quote \" and ✓"})


if __name__ == "__main__":
    make_gguf()
    make_gptq()
    make_awq()
    make_safetensors()
