"""VGG19 features up to relu5_1 in PyTorch (random weights, torchvision layout), to compare
with `cargo xtask vgg-bench`: seconds per forward, and per forward + backward to the input
image (`out.sum().backward()` with only the image requiring grad: one style-transfer step).

    /path/to/venv-torch/bin/python benches/pytorch/vgg_bench.py --threads 1 --json
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def vgg19_features():
    layers, cin = [], 3
    for v in CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers)


def median_s(reps, fn):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = vgg19_features()[:30].eval()  # up to and including relu5_1 (index 29)
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, a.size, a.size)

    def fwd():
        with torch.no_grad():
            net(x)

    def fwdbwd():
        img = x.clone().requires_grad_()
        net(img).sum().backward()
        assert img.grad is not None

    f, fb = median_s(a.reps, fwd), median_s(a.reps, fwdbwd)
    if a.json:
        print(json.dumps({"impl": "pytorch " + torch.__version__, "threads": a.threads, "size": a.size,
                          "fwd_s": f, "fwdbwd_s": fb}))
    else:
        print(f"VGG19 to relu5_1, 1x3x{a.size}x{a.size}, {a.threads} threads: forward {f:.3f} s, "
              f"forward + backward to the image {fb:.3f} s")


if __name__ == "__main__":
    main()
