"""The PyTorch peer of bench_cuda's int4 table: PyTorch's own int4 weight-only GEMM (tinygemm:
torch._weight_int4pack_mm, bf16 activations, groups of 128 with zero points, as gpt-fast and
torchao call it) and dense torch.nn.functional.linear (cuBLAS) in fp16 and bf16, on the same
shapes: y[M x N] = x[M x K] · Wᵀ, N x K = 8192 x 8192 and 4096 x 14336, M = 1 .. 256. CUDA events
around 100 calls, median of 5 runs; calls rotate over 4 copies of the weights (more than the 50 MB
L2, as bench_cuda does), so each call streams its weights from memory. Run by scripts/gpu.sh on the
GPU machine; needs torch with CUDA."""
import torch
import torch.nn.functional as F

from torch_timing import time_us

SHAPES = [(8192, 8192), (4096, 14336)]
MS = [1, 4, 16, 64, 256]
GROUP = 128
COPIES = 4


def quantize_int4(w):
    """Asymmetric int4 per group of GROUP along K, in tinygemm's convention: w ≈ (q - 8) · scale + zero,
    q in 0..15. Returns the codes (int32, N x K) and scales_and_zeros (K / GROUP x N x 2, bf16)."""
    n, k = w.shape
    g = w.float().view(n, k // GROUP, GROUP)
    lo, hi = g.amin(dim=-1, keepdim=True), g.amax(dim=-1, keepdim=True)
    scale = ((hi - lo) / 15).clamp(min=1e-6)
    q = ((g - lo) / scale).round().clamp(0, 15).to(torch.int32)
    zero = lo + 8 * scale  # the value of code 8
    sz = torch.cat([scale, zero], dim=-1).view(n, k // GROUP, 2).transpose(0, 1).contiguous().to(torch.bfloat16)
    return q.view(n, k), sz


def pack(q, inner_k_tiles=8):
    """tinygemm's packed layout: two codes a byte (even columns in the high nibble), then its tiles."""
    packed = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
    return torch._convert_weight_to_int4pack(packed, inner_k_tiles)


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; tinygemm int4 (bf16 x, group {GROUP}) "
          f"against cuBLAS through F.linear; weights rotated over {COPIES} copies")
    if not hasattr(torch, "_weight_int4pack_mm"):
        print("(this torch has no torch._weight_int4pack_mm: int4 peer not run)")
        return
    print("| N x K | M | torch int4 µs | GB/s of weights | cuBLAS fp16 µs | cuBLAS bf16 µs | int4 vs fp16 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, k in SHAPES:
        weights = [torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.02 for _ in range(COPIES)]
        weights_bf16 = [w.to(torch.bfloat16) for w in weights]
        packed, sz = [], []
        for w in weights:
            q, s = quantize_int4(w)
            packed.append(pack(q))
            sz.append(s)
        # Sanity: tinygemm's product is the product with the dequantized weights.
        q, s = quantize_int4(weights[0])
        deq = ((q.float() - 8).view(n, k // GROUP, GROUP) * s[..., 0].float().t().unsqueeze(-1)
               + s[..., 1].float().t().unsqueeze(-1)).view(n, k)
        x = torch.randn(16, k, device="cuda", dtype=torch.bfloat16)
        got = torch._weight_int4pack_mm(x, packed[0], GROUP, sz[0]).float()
        ref = x.float() @ deq.t()
        err = ((got - ref).abs().max() / ref.abs().max()).item()
        print(f"max |tinygemm - dequantized reference| / max |reference| at {n} x {k}: {err:.2e}")
        weight_bytes = n * k / 2 + (k // GROUP) * n * 4
        for m in MS:
            x16 = torch.randn(m, k, device="cuda", dtype=torch.float16)
            xb = x16.to(torch.bfloat16)
            int4 = time_us(lambda i: torch._weight_int4pack_mm(xb, packed[i % COPIES], GROUP, sz[i % COPIES]), 100, 5, 2 * COPIES)
            fp16 = time_us(lambda i: F.linear(x16, weights[i % COPIES]), 100, 5, 2 * COPIES)
            bf16 = time_us(lambda i: F.linear(xb, weights_bf16[i % COPIES]), 100, 5, 2 * COPIES)
            print(f"| {n} x {k} | {m} | {int4:.1f} | {weight_bytes / int4 * 1e-3:.0f} | {fp16:.1f} | {bf16:.1f} | "
                  f"{fp16 / int4:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
