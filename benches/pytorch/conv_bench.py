"""Times the issue-2 convolution shapes in PyTorch, to compare with `cargo xtask conv-bench`.

Set up once, outside the repository (PyTorch is never a dependency of the workspace):

    python3 -m venv /path/to/venv-torch
    /path/to/venv-torch/bin/pip install torch numpy

Run with the same thread count as ours:

    /path/to/venv-torch/bin/python benches/pytorch/conv_bench.py --threads 1 --json

Forward is `conv_Nd(x, w, b)`; forward + backward adds `y.backward(g)` computing the input,
weight and bias gradients, exactly the work `cargo xtask conv-bench` times.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

# (name, N, C_in, spatial, C_out, kernel, stride, padding): keep in sync with xtask SHAPES.
SHAPES = [
    ("2d_64x256x256_64", 1, 64, (256, 256), 64, 3, 1, 1),
    ("2d_128x64x64_256", 1, 128, (64, 64), 256, 3, 1, 1),
    ("2d_512x16x16_512", 1, 512, (16, 16), 512, 3, 1, 1),
    ("2d_b64_32x32x32_64", 64, 32, (32, 32), 64, 3, 1, 1),
    ("2d_b32_3x96x96_64_k7s2", 32, 3, (96, 96), 64, 7, 2, 3),
    ("1d_b256_1x14_16_k5", 256, 1, (14,), 16, 5, 1, 0),
    ("1d_b64_32x1000_64_k7", 64, 32, (1000,), 64, 7, 1, 3),
    ("3d_1x14^3_16_k5", 1, 1, (14, 14, 14), 16, 5, 1, 0),
    ("3d_b8_16x32^3_32", 8, 16, (32, 32, 32), 32, 3, 1, 1),
]
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def median_ms(reps, fn):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = []
    for name, n, cin, sp, cout, k, s, p in SHAPES:
        if a.only and a.only not in name:
            continue
        conv = CONV[len(sp)]
        x = torch.randn(n, cin, *sp, requires_grad=True)
        w = (0.1 * torch.randn(cout, cin, *([k] * len(sp)))).requires_grad_()
        b = (0.1 * torch.randn(cout)).requires_grad_()
        with torch.no_grad():
            y = conv(x, w, b, stride=s, padding=p)
        g = torch.randn_like(y)
        out_vol = y[0, 0].numel()
        flops = 2.0 * n * cout * out_vol * cin * k ** len(sp)

        def fwd():
            with torch.no_grad():
                conv(x, w, b, stride=s, padding=p)

        def fwdbwd():
            x.grad = w.grad = b.grad = None
            conv(x, w, b, stride=s, padding=p).backward(g)

        f_ms = median_ms(a.reps, fwd)
        fb_ms = median_ms(a.reps, fwdbwd)
        if not a.json:
            print(f"{name:<26} fwd {f_ms:9.3f} ms {flops / f_ms / 1e6:7.1f} GFLOP/s   "
                  f"fwd+bwd {fb_ms:9.3f} ms {3 * flops / fb_ms / 1e6:7.1f} GFLOP/s")
        rows.append({"name": name, "fwd_ms": f_ms, "fwdbwd_ms": fb_ms, "gflop": flops / 1e9})
    if a.json:
        print(json.dumps({"impl": "pytorch " + torch.__version__, "threads": a.threads,
                          "kernel": torch.backends.cpu.get_cpu_capability(), "rows": rows}))


if __name__ == "__main__":
    main()
