"""How the demo's face box for the frozen face ResNet-29 stream was chosen: on ORL's training
people s1-s30 only, as three galleries of 10 people (s1-s10, s11-s20, s21-s30), for square
boxes of several sides and heights. Prints, per box, the mean over the three galleries of the
all-pairs ROC AUC and one-shot rank-1 (first image enrolled; every image enrolled in turn)
of the L2-normalised embeddings, no mirror averaging.

The network is the PyTorch port in face_resnet29_bench.py; the box is sampled with half-pixel
bilinear interpolation and the edge replicated, as `faces::resnet29::chip` does.

Usage: python orl_face_box_grid.py ORL_DIR WEIGHTS.safetensors [SIDES] [CENTRE_ROWS]
  (defaults: sides 95,100,105,110,115; centre rows 66,70,74,78; centre column 46)
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from face_resnet29_bench import forward

MEAN = torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1)


def chips(images, side, cx, cy):
    """(N, 3, 150, 150) network inputs of the square box centred at (cx, cy)."""
    x = torch.from_numpy(images)[:, None]
    h, w = images.shape[1:]
    d = (torch.arange(150) + 0.5) * (side / 150) - side / 2
    gx, gy = (cx + d) / w * 2 - 1, (cy + d) / h * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]
    grid = grid.expand(x.shape[0], 150, 150, 2)
    p = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (p.expand(-1, 3, -1, -1) - MEAN) / 255


def measures(e, labels):
    """AUC of all pairs, rank-1 with the first image enrolled, with every image in turn."""
    d = ((e[:, None] - e[None]) ** 2).sum(-1)
    iu = np.triu_indices(len(e), 1)
    dist, same = d[iu], (labels[:, None] == labels[None])[iu]
    ranks = np.empty(len(dist))
    ranks[np.argsort(dist)] = np.arange(len(dist))[::-1] + 1
    npos = same.sum()
    auc = (ranks[same].sum() - npos * (npos + 1) / 2) / (npos * (len(dist) - npos))
    people = np.unique(labels)
    hits = {True: [0, 0], False: [0, 0]}
    for k in range(10):
        gallery = np.array([np.where(labels == p)[0][k] for p in people])
        for i in range(len(e)):
            if i in gallery:
                continue
            ok = labels[gallery[np.argmin(d[i, gallery])]] == labels[i]
            for first in ({True, False} if k == 0 else {False}):
                hits[first][0] += ok
                hits[first][1] += 1
    return auc, hits[True][0] / hits[True][1], hits[False][0] / hits[False][1]


def main():
    root, weights = sys.argv[1], sys.argv[2]
    sides = [float(v) for v in (sys.argv[3] if len(sys.argv) > 3 else "95,100,105,110,115").split(",")]
    rows = [float(v) for v in (sys.argv[4] if len(sys.argv) > 4 else "66,70,74,78").split(",")]
    torch.set_num_threads(2)
    w = load_file(weights)
    images = np.stack([np.asarray(Image.open(f"{root}/s{s}/{i}.pgm"), dtype=np.float32)
                       for s in range(1, 31) for i in range(1, 11)])
    labels = np.repeat(np.arange(30), 10)
    print("side  centre (x, y)  AUC     rank-1 first  rank-1 every  (mean of s1-s10, s11-s20, s21-s30)")
    for side in sides:
        for cy in rows:
            x = chips(images, side, 46.0, cy)
            with torch.no_grad():
                e = torch.cat([forward(w, x[i:i + 50], False) for i in range(0, len(x), 50)]).numpy()
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            m = np.mean([measures(e[100 * g:100 * (g + 1)], labels[100 * g:100 * (g + 1)])
                         for g in range(3)], axis=0)
            print(f"{side:5.0f}  (46, {cy:3.0f})      {m[0]:.4f}  {100 * m[1]:6.2f} %      {100 * m[2]:6.2f} %",
                  flush=True)


if __name__ == "__main__":
    main()
