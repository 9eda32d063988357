"""Prints a Markdown table comparing `cargo xtask conv-bench --json` with conv_bench.py --json.

    python3 benches/pytorch/compare.py ours1.json [ours2.json ...] -- torch1.json [torch2.json ...]

With several rounds per side, each shape's time is the best of the rounds' medians: the
machine is a shared VM whose speed drifts by 10-20 % between minutes, and the best round is the
fairest estimate of what each implementation can do.
"""
import json
import sys


def load_best(paths):
    runs = [json.loads(open(p).read().strip().splitlines()[-1]) for p in paths]
    best = {}
    for run in runs:
        for r in run["rows"]:
            b = best.setdefault(r["name"], dict(r))
            b["fwd_ms"] = min(b["fwd_ms"], r["fwd_ms"])
            b["fwdbwd_ms"] = min(b["fwdbwd_ms"], r["fwdbwd_ms"])
    head = dict(runs[0])
    head["rows"] = [best[r["name"]] for r in runs[0]["rows"]]
    return head


def main():
    args = sys.argv[1:]
    cut = args.index("--")
    ours, theirs = load_best(args[:cut]), load_best(args[cut + 1:])
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
