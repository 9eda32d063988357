"""Training throughput of the ORL classifier network in PyTorch, to compare with
`cargo xtask train-bench` (same network, batch, input size, loss and optimizer).

    /path/to/venv-torch/bin/python benches/pytorch/train_bench.py --threads 1 --json

Network (nn::models::small_cnn): 3 x [conv 3x3 pad 1 no bias -> BatchNorm -> ReLU -> max pool 2],
global average pooling, dropout 0.2, linear; cross-entropy with label smoothing 0.1; AdamW
(lr 1e-3, weight decay 5e-4). Random 1 x H x W inputs.
"""
import argparse
import json
import time

import torch
import torch.nn as nn


def block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", default="56x46")
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    h, w = map(int, a.size.split("x"))
    w1, w2, w3 = map(int, a.widths.split(","))
    net = nn.Sequential(*block(1, w1), *block(w1, w2), *block(w2, w3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Dropout(0.2), nn.Linear(w3, a.classes))
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(a.batch, 1, h, w)
    y = torch.arange(a.batch) % a.classes

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - t
    ips = a.steps * a.batch / secs
    if a.json:
        print(json.dumps({"impl": "pytorch " + torch.__version__, "threads": a.threads, "batch": a.batch,
                          "images_per_second": ips, "ms_per_step": 1e3 * secs / a.steps}))
    else:
        print(f"{ips:.1f} images/s ({1e3 * secs / a.steps:.2f} ms per step of {a.batch}) on {a.threads} threads")


if __name__ == "__main__":
    main()
