"""The PyTorch peer of bench_cuda_sparse24's M > 64 table: 2:4 fp16 and bf16 GEMM through cuSPARSELt
(torch._cslt_compress / torch._cslt_sparse_mm, the best algorithm id from torch._cslt_sparse_mm_search
where torch has it) and dense torch.nn.functional.linear (cuBLAS) on the same shapes: y[M x N] =
x[M x K] · Wᵀ, N x K = 8192 x 8192 and 4096 x 14336, M = 128 .. 4096. CUDA events around 20
(M >= 1024) or 100 calls, median of 5 runs, cuSPARSELt and dense in alternating rounds (the H100's
power cap: torch_timing.py); TFLOP/s counted as dense (2 M N K). Run on the GPU machine; needs torch
with CUDA and cuSPARSELt.

--int8: the W8A8 peers of bench_cuda_sparse24's W8A8 table instead: cuSPARSELt 2:4 int8 x int8
(torch._cslt_sparse_mm, int32 output where this torch offers it, else bf16) against dense
torch._int_mm (int8 x int8 -> int32, cuBLASLt), M = 1 .. 4096; TOP/s counted as dense (2 M N K)."""
import sys

import torch
import torch.nn.functional as F

from torch_timing import time_interleaved_us, time_us

SHAPES = [(8192, 8192), (4096, 14336)]
MS = [128, 256, 512, 1024, 2048, 4096]


def prune24(w):
    """Keeps the 2 largest magnitudes of every 4 consecutive values of a row."""
    n, k = w.shape
    groups = w.view(n, k // 4, 4)
    keep = groups.abs().topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return (groups * mask).view(n, k)


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cuSPARSELt "
          f"{getattr(torch.backends.cusparselt, 'version', lambda: '?')()}")
    print("| dtype | N x K | M | cuSPARSELt µs | TFLOP/s | torch dense µs | TFLOP/s | sparse / dense |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for dtype in (torch.float16, torch.bfloat16):
        for n, k in SHAPES:
            w = prune24(torch.randn(n, k, device="cuda", dtype=dtype) * 0.02)
            compressed = torch._cslt_compress(w)
            x_all = torch.randn(max(MS), k, device="cuda", dtype=dtype)
            for m in MS:
                x = x_all[:m]
                xt = x.t()  # W · xᵀ: [N x M]
                alg = 0
                if hasattr(torch, "_cslt_sparse_mm_search"):
                    try:
                        alg = torch._cslt_sparse_mm_search(compressed, xt)
                    except RuntimeError:
                        alg = 0
                its = 20 if m >= 1024 else 100
                sparse, dense = time_interleaved_us(lambda i: torch._cslt_sparse_mm(compressed, xt, alg_id=alg),
                                                    lambda i: F.linear(x, w), its)
                flop = 2.0 * m * n * k
                name = "fp16" if dtype == torch.float16 else "bf16"
                print(f"| {name} | {n} x {k} | {m} | {sparse:.1f} | {flop / sparse * 1e-6:.0f} | {dense:.1f} | "
                      f"{flop / dense * 1e-6:.0f} | {dense / sparse:.2f}x |", flush=True)
            # Sanity: the sparse product is the dense one.
            ref = F.linear(x_all[:256], w).t()
            got = torch._cslt_sparse_mm(compressed, x_all[:256].t())
            print(f"max |cuSPARSELt - dense| / max |dense| ({dtype}): "
                  f"{((got.float() - ref.float()).abs().max() / ref.float().abs().max()).item():.2e}")


def int8_main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cuSPARSELt "
          f"{getattr(torch.backends.cusparselt, 'version', lambda: '?')()}")
    print("| N x K | M | cuSPARSELt 2:4 int8 µs (output) | TOP/s | torch._int_mm µs | TOP/s | sparse / dense |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, k in SHAPES:
        w = prune24(torch.randint(-127, 128, (n, k), device="cuda").float()).to(torch.int8)
        compressed = torch._cslt_compress(w)
        x_all = torch.randint(-127, 128, (4096, k), device="cuda", dtype=torch.int8)
        for m in [1, 16, 64, 256, 1024, 4096]:
            x = x_all[:m]
            xt = x.t()
            its = 20 if m >= 1024 else 100
            sparse, out = None, "-"
            for out_dtype in (torch.int32, torch.bfloat16):
                try:
                    alg = 0
                    if hasattr(torch, "_cslt_sparse_mm_search"):
                        try:
                            alg = torch._cslt_sparse_mm_search(compressed, xt, out_dtype=out_dtype)
                        except (RuntimeError, TypeError):
                            alg = 0
                    got = torch._cslt_sparse_mm(compressed, xt, out_dtype=out_dtype, alg_id=alg)
                    sparse = time_us(lambda i: torch._cslt_sparse_mm(compressed, xt, out_dtype=out_dtype, alg_id=alg), its)
                    out = str(out_dtype).replace("torch.", "")
                    if out_dtype == torch.int32 and m >= 16:
                        ref = torch._int_mm(x, w.t()).t()
                        assert torch.equal(got, ref), "cuSPARSELt int8 differs from torch._int_mm"
                    break
                except (RuntimeError, TypeError) as e:
                    out = f"failed: {str(e).splitlines()[0][:60]}"
            try:
                dense = time_us(lambda i: torch._int_mm(x, w.t()), its)
            except RuntimeError:
                dense = None
            op = 2.0 * m * n * k
            fmt = lambda us: (f"{us:.1f} | {op / us * 1e-6:.0f}" if us else "- | -")
            ratio = f"{dense / sparse:.2f}x" if sparse and dense else "-"
            print(f"| {n} x {k} | {m} | {fmt(sparse)} ({out}) | {fmt(dense)} | {ratio} |", flush=True)


if __name__ == "__main__":
    if "--int8" in sys.argv:
        int8_main()
    else:
        main()
