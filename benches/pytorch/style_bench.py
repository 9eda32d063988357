"""The same style transfer as `cargo xtask style`, in PyTorch, for a side-by-side comparison.

Same network (SqueezeNet 1.1 from the repository's safetensors file), same layers (content fire5;
style relu1, fire2, fire4, fire6, fire8 with lambda = 1/5), same costs (seed eq. 8-13), same
inputs (the .npy files `cargo xtask style --dump-inputs DIR` writes), same optimiser settings
(L-BFGS: lr 1, history 100, strong-Wolfe line search, tolerances 1e-7 / 1e-9; or Adam), same
iterations and threads. Prints one JSON line: seconds per iteration, final loss, evaluations.

Set-up outside the repository:
    python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip install torch numpy safetensors
Usage:
    cargo xtask style --content C --style S --out /tmp/o.png --size 256 --iters 100 --dump-inputs /tmp/in
    python benches/pytorch/style_bench.py --inputs /tmp/in --iters 100 --threads 2
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# SqueezeNet 1.1 features: (kind, index) with fire modules (squeeze, expand1x1, expand3x3).
STAGES = ["conv", "relu", "pool", "fire", "fire", "pool", "fire", "fire", "pool", "fire", "fire", "fire", "fire"]
NAMES = ["conv1", "relu1", "pool1", "fire2", "fire3", "pool3", "fire4", "fire5", "pool5", "fire6", "fire7", "fire8", "fire9"]


def features(x, w, taps, avg_pool=False):
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    y = (x - mean) / std
    out = {}
    for i, kind in enumerate(STAGES[: max(taps) + 1]):
        p = f"features.{i}"
        if kind == "conv":
            y = F.conv2d(y, w[p + ".weight"], w[p + ".bias"], stride=2)
        elif kind == "relu":
            y = F.relu(y)
        elif kind == "pool":
            pool = F.avg_pool2d if avg_pool else F.max_pool2d
            y = pool(y, 3, 2, ceil_mode=True)
        else:
            s = F.relu(F.conv2d(y, w[p + ".squeeze.weight"], w[p + ".squeeze.bias"]))
            e1 = F.relu(F.conv2d(s, w[p + ".expand1x1.weight"], w[p + ".expand1x1.bias"]))
            e3 = F.relu(F.conv2d(s, w[p + ".expand3x3.weight"], w[p + ".expand3x3.bias"], padding=1))
            y = torch.cat([e1, e3], 1)
        if i in taps:
            out[i] = y
    return [out[t] for t in taps]


def gram(a):
    _, c, h, w = a.shape
    f = a.reshape(c, h * w)
    return f @ f.t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--weights", default="crates/nn/assets/squeezenet1_1.safetensors")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", default="lbfgs")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=1e4)
    ap.add_argument("--styles", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w = {k: torch.from_numpy(v) for k, v in load_file(args.weights).items()}
    load = lambda n: torch.from_numpy(np.load(f"{args.inputs}/{n}.npy"))
    content, init = load("content"), load("init")
    styles = [(load(f"style{i}"), float(load(f"style{i}_weight")[0])) for i in range(args.styles)]
    content_tap = NAMES.index("fire5")
    style_taps = [NAMES.index(n) for n in ["relu1", "fire2", "fire4", "fire6", "fire8"]]
    lambdas = [1.0 / len(style_taps)] * len(style_taps)
    with torch.no_grad():
        target_c = features(content, w, [content_tap])[0]
        total_w = sum(s[1] for s in styles)
        grams = [0.0] * len(style_taps)
        for img, wt in styles:
            for k, a in enumerate(features(img, w, style_taps)):
                grams[k] = grams[k] + gram(a) * (wt / total_w)
    x = init.clone().requires_grad_(True)
    evals = [0]

    def loss_fn():
        acts = features(x, w, style_taps + [content_tap])
        jc = 0.5 * ((target_c - acts[-1]) ** 2).sum() * args.alpha
        js = 0.0
        for a, g, lam in zip(acts[:-1], grams, lambdas):
            _, c, h, wd = a.shape
            js = js + lam * ((g - gram(a)) ** 2).sum() / (2.0 * c * h * wd) ** 2
        return jc + js * args.beta

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        evals[0] += 1
        return loss

    if args.optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=args.iters, max_eval=args.iters * 25,
                                history_size=100, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-7, tolerance_change=1e-9)
        t0 = time.perf_counter()
        opt.step(closure)
        seconds = time.perf_counter() - t0
        iters = opt.state[opt._params[0]]["n_iter"]
    else:
        opt = torch.optim.Adam([x], lr=args.lr)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            opt.step(closure)
        seconds = time.perf_counter() - t0
        iters = args.iters
    with torch.no_grad():
        final = float(loss_fn())
    print(json.dumps({
        "seconds_per_iteration": seconds / max(iters, 1),
        "iterations": iters,
        "evaluations": evals[0],
        "final_loss": final,
        "threads": args.threads,
        "size": list(content.shape),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
