"""CUDA-event timing shared by the PyTorch peers (torch_int4.py, sdpa_decode.py, cusparselt_24.py),
the same method as bench/cuda/timing.cuh: each call gets its index (to rotate over weight or cache
copies), warm-up calls first, then `repeats` runs of `iterations` calls; the median of the runs'
mean µs per call."""
import statistics

import torch


def _round_us(fn, iterations, start, stop):
    start.record()
    for i in range(iterations):
        fn(i)
    stop.record()
    stop.synchronize()
    return 1000.0 * start.elapsed_time(stop) / iterations


def time_us(fn, iterations, repeats=5, warmup=3):
    for i in range(warmup):
        fn(i)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    return statistics.median(_round_us(fn, iterations, start, stop) for _ in range(repeats))


def time_interleaved_us(a, b, iterations, repeats=5, warmup=3):
    """a and b timed in alternating rounds, so both run on the same board: from M = 256 an H100 runs
    GEMMs at its power cap and its clock falls as it heats (docs/cuda-gemm-notes.md), so timings
    made one after the other depend on their order. Returns (a's µs, b's µs)."""
    for i in range(warmup):
        a(i)
        b(i)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    runs_a, runs_b = [], []
    for _ in range(repeats):
        runs_a.append(_round_us(a, iterations, start, stop))
        runs_b.append(_round_us(b, iterations, start, stop))
    return statistics.median(runs_a), statistics.median(runs_b)
