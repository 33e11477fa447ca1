"""The PyTorch peer of bench_cuda_decode: SDPA fp16 decode attention at the same shape (B=8, S=8192,
Hq=32, Hkv=8, d=128, GQA through enable_gqa), CUDA events around 50 calls, median of 7 runs, calls
alternating between two K/V copies (the fp16 cache, 268 MB, would not fit L2 anyway). Run by
scripts/gpu.sh on the GPU machine; needs torch with CUDA. --head-dim N times d = N instead (80, 96,
256: the other head dims bench_cuda_decode times)."""
import argparse

import torch
import torch.nn.functional as F

from torch_timing import time_us

B, S, HQ, HKV, D = 8, 8192, 32, 8, 128


def main():
    global D
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-dim", type=int, default=D)
    D = parser.parse_args().head_dim
    torch.manual_seed(0)
    dev = "cuda"
    q = torch.randn(B, HQ, 1, D, device=dev, dtype=torch.float16)
    kv = [(torch.randn(B, HKV, S, D, device=dev, dtype=torch.float16),
           torch.randn(B, HKV, S, D, device=dev, dtype=torch.float16)) for _ in range(2)]
    bytes_read = 2 * B * HKV * S * D * 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; B={B} S={S} Hq={HQ} Hkv={HKV} d={D}")
    us = time_us(lambda i: F.scaled_dot_product_attention(q, kv[i % 2][0], kv[i % 2][1], enable_gqa=True), 50, 7, 6)
    print(f"SDPA fp16 GQA (enable_gqa): {us:.1f} us, {bytes_read / us * 1e-3:.0f} GB/s of K/V")
    # The same with K/V expanded to the query heads first is what older code does; not timed (it
    # moves 4x the bytes). The flash-decoding-shaped alternative: q as [B, HKV, 4, D] against K/V.
    qg = q.view(B, HKV, HQ // HKV, D)
    us2 = time_us(lambda i: F.scaled_dot_product_attention(qg, kv[i % 2][0], kv[i % 2][1]), 50, 7, 6)
    print(f"SDPA fp16, query heads folded into the query length ([B, Hkv, 4, d]): {us2:.1f} us, "
          f"{bytes_read / us2 * 1e-3:.0f} GB/s")
    best = min(us, us2)
    print(f"SDPA_BEST_US {best:.2f}")


if __name__ == "__main__":
    main()
