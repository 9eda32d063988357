"""Prints a Markdown table comparing `cargo xtask conv-bench --json` with conv_bench.py --json.

    python3 benches/pytorch/compare.py ours.json torch.json
"""
import json
import sys


def main():
    ours, theirs = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
    t = {r["name"]: r for r in theirs["rows"]}
    print(f"threads: {ours['threads']} (ours: {ours['kernel']} kernel; {theirs['impl']}, "
          f"{theirs['kernel']})\n")
    print("| shape | ours fwd ms | PyTorch fwd ms | fwd speed-up | ours fwd+bwd ms | "
          "PyTorch fwd+bwd ms | fwd+bwd speed-up | ours fwd GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in ours["rows"]:
        p = t.get(r["name"])
        if p is None:
            continue
        print(f"| {r['name']} | {r['fwd_ms']:.3f} | {p['fwd_ms']:.3f} | "
              f"{p['fwd_ms'] / r['fwd_ms']:.2f}x | {r['fwdbwd_ms']:.3f} | {p['fwdbwd_ms']:.3f} | "
              f"{p['fwdbwd_ms'] / r['fwdbwd_ms']:.2f}x | {r['gflop'] / r['fwd_ms'] * 1e3:.0f} |")


if __name__ == "__main__":
    main()
