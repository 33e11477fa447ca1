"""Golden data for lowbit's PyTorch semi-structured (2:4) interop, made by PyTorch itself.

For fp16, bf16 and int8 matrices with exactly two non-zeros in every group of 4 columns (and,
named *_fewer, matrices whose groups hold 0, 1 or 2 non-zeros: PyTorch then picks zero positions
by its own rule), writes the dense matrix and what PyTorch's CUTLASS layout makes of it: the compressed values (rows x K/2)
and the reordered metadata (int16 rows x K/16 for 16-bit values, int32 rows x K/32 for int8), as
torch.sparse._semi_structured_conversions.sparse_semi_structured_from_dense_cutlass computes them.
On a CUDA machine it also checks them against to_sparse_semi_structured's own CUTLASS tensor
(its `packed` and `meta`), the layout the GPU kernels read.

Output (run: python3 gen_torch_sparse24.py OUT_DIR):
  torch_sparse24.bin  the arrays back to back, little-endian
  torch_sparse24.txt  one line per array: name dtype rows cols byte_offset byte_count, after
                      a header line with torch's version and whether the GPU check ran
"""
import os
import sys

import torch
from torch.sparse._semi_structured_conversions import sparse_semi_structured_from_dense_cutlass


def two_of_four(rows, cols, dtype, generator):
    # Random values that are never zero, then a random pair of kept positions per group of 4.
    if dtype == torch.int8:
        magnitude = torch.randint(1, 128, (rows, cols), generator=generator)
        sign = torch.randint(0, 2, (rows, cols), generator=generator) * 2 - 1
        values = (magnitude * sign).clamp(-127, 127).to(torch.int8)
    else:
        values = torch.randn(rows, cols, generator=generator)
        values = (values + values.sign() * 0.125).to(dtype)
    keep = torch.zeros(rows, cols // 4, 4, dtype=torch.bool)
    order = torch.rand(rows, cols // 4, 4, generator=generator).argsort(dim=-1)[..., :2]
    keep.scatter_(-1, order, True)
    return values * keep.view(rows, cols).to(values.dtype)


def fewer_than_two(rows, cols, dtype, generator):
    # As two_of_four, then each kept value dropped with probability 1/3 (groups of 0, 1, 2 non-zeros).
    dense = two_of_four(rows, cols, dtype, generator)
    drop = torch.rand(rows, cols, generator=generator) < 1.0 / 3.0
    return torch.where(drop, torch.zeros_like(dense), dense)  # +0, never -0


def raw(t):
    return bytes(t.contiguous().view(torch.uint8).flatten().tolist())


def main(out_dir):
    generator = torch.Generator().manual_seed(2411)
    gpu = torch.cuda.is_available()
    if gpu:
        from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured
        SparseSemiStructuredTensor._FORCE_CUTLASS = True
    blob, lines = bytearray(), [f"# torch {torch.__version__} gpu_check {int(gpu)}"]

    def add(name, tensor):
        names = {torch.float16: "f16", torch.bfloat16: "bf16", torch.int8: "i8", torch.int16: "i16", torch.int32: "i32"}
        data = raw(tensor.cpu())
        lines.append(f"{name} {names[tensor.dtype]} {tensor.shape[0]} {tensor.shape[1]} {len(blob)} {len(data)}")
        blob.extend(data)

    cases = [(dtype, tag, rows, cols, two_of_four, "")
             for dtype, tag in ((torch.float16, "f16"), (torch.bfloat16, "bf16"), (torch.int8, "i8"))
             for rows, cols in ((64, 128), (96, 256))]
    # After the exact-2 cases, so that those arrays stay what earlier runs made.
    cases += [(dtype, tag, 64, 128, fewer_than_two, "_fewer")
              for dtype, tag in ((torch.float16, "f16"), (torch.bfloat16, "bf16"), (torch.int8, "i8"))]
    for dtype, tag, rows, cols, make, suffix in cases:
        dense = make(rows, cols, dtype, generator)
        packed, meta = sparse_semi_structured_from_dense_cutlass(dense)
        if gpu:
            on_gpu = to_sparse_semi_structured(dense.cuda())
            assert torch.equal(on_gpu.packed.cpu(), packed), f"{tag} {rows}x{cols}: packed differs"
            assert torch.equal(on_gpu.meta.cpu().view(meta.dtype), meta), f"{tag} {rows}x{cols}: meta differs"
        name = f"{tag}_{rows}x{cols}{suffix}"
        add(name + "_dense", dense)
        add(name + "_values", packed)
        add(name + "_meta", meta)

    with open(os.path.join(out_dir, "torch_sparse24.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(out_dir, "torch_sparse24.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
