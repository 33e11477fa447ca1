#!/usr/bin/env python3
"""Turns a Google Benchmark JSON file into a markdown table: one row per benchmark, with time,
GB/s (bytes_per_second) and G items/s or GOP/s where the benchmark reports them, plus the
machine's name and CPU, so a table always says where it was measured."""
import json
import platform
import sys


def main(path):
    with open(path) as f:
        data = json.load(f)
    ctx = data.get("context", {})
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print("Measured %s on %s (%s, %d cores, %s)\n" % (ctx.get("date", "?"), platform.node(), cpu,
                                                   ctx.get("num_cpus", 0), ctx.get("library_build_type", "?")))
    print("| benchmark | time | GB/s | G items/s | GOP/s |")
    print("|---|---:|---:|---:|---:|")
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b["name"].replace("/real_time", "")
        t = "%.3g %s" % (b["real_time"], b.get("time_unit", "ns"))
        gbs = "%.1f" % (b["bytes_per_second"] / 1e9) if "bytes_per_second" in b else ""
        items = "%.2f" % (b["items_per_second"] / 1e9) if "items_per_second" in b else ""
        ops = "%.1f" % (b["ops"] / 1e9) if "ops" in b else ""
        print("| %s | %s | %s | %s | %s |" % (name, t, gbs, items, ops))


if __name__ == "__main__":
    main(sys.argv[1])
