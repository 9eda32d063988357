"""face_recognition (dlib) on LFW View 2, for the side-by-side table in docs/FACES.md part 3.

Set-up outside the repository (no compiler needed: dlib-bin is a prebuilt wheel of dlib 20.0.1):
    python3 -m venv /tmp/venv-fr
    /tmp/venv-fr/bin/pip install dlib-bin numpy pillow click
    /tmp/venv-fr/bin/pip install --no-deps face_recognition face_recognition_models
Run:
    /tmp/venv-fr/bin/python benches/face_recognition/lfw_view2.py LFW_DIR [--jobs 2] [--out F.json]

Each distinct image of pairs.txt: face_recognition.face_locations (HOG detector, upsample 1),
the face whose box contains the image centre (else the one nearest it; none found: the whole
image as the box, as face_recognition users do for crops), face_encodings (5-point landmarks,
dlib's aligned chip, 1 jitter). 10-fold accuracy with the threshold chosen on the 9 training
folds (best accuracy, midpoints), the same rule as `faces eval --view 2`.
"""
import argparse, json, os, sys, time
from multiprocessing import Pool

import numpy as np


def encode(path):
    import face_recognition
    t0 = time.perf_counter()
    img = face_recognition.load_image_file(path)
    h, w = img.shape[:2]
    locs = face_recognition.face_locations(img)  # (top, right, bottom, left)
    rule = "none"
    pick = None
    cx, cy = w / 2, h / 2
    inside = [l for l in locs if l[3] <= cx <= l[1] and l[0] <= cy <= l[2]]
    if inside:
        pick, rule = inside[0], "contains_centre"
    elif locs:
        pick = min(locs, key=lambda l: ((l[1] + l[3]) / 2 - cx) ** 2 + ((l[0] + l[2]) / 2 - cy) ** 2)
        rule = "nearest_centre"
    else:
        pick = (0, w, h, 0)
    enc = face_recognition.face_encodings(img, known_face_locations=[pick])[0]
    return path, enc.tolist(), rule, len(locs), time.perf_counter() - t0


def parse_pairs(path, root):
    """pairs.txt (header `folds n`: fold k = lines 2nk..) or pairsDevTest.txt (header `n`: 10
    folds inside it, fold k = same pairs 50k.. and different pairs 50k.., as `faces eval
    --view devtest`)."""
    lines = open(path).read().split("\n")
    head = list(map(int, lines[0].split()))
    pairs = []
    for i, line in enumerate(l for l in lines[1:] if l.strip()):
        f = line.split("\t")
        if len(f) == 3:
            a = (f[0], int(f[1])); b = (f[0], int(f[2])); same = True
        else:
            a = (f[0], int(f[1])); b = (f[2], int(f[3])); same = False
        if len(head) == 2:
            fold = i // (2 * head[1])
        else:
            n = head[0]
            fold = min(9, (i if same else i - n) // -(-n // 10))
        pairs.append((a, b, same, fold))
    img = lambda p: os.path.join(root, p[0], f"{p[0]}_{p[1]:04d}.jpg")
    return [(img(a), img(b), s, k) for a, b, s, k in pairs]


def best_threshold(d, same):
    order = np.argsort(d)
    ds, ss = d[order], same[order]
    cand = np.concatenate([[ds[0] - 1], (ds[:-1] + ds[1:]) / 2, [ds[-1] + 1]])
    best, best_acc = cand[0], -1
    for t in cand:
        acc = np.mean((d <= t) == same)
        if acc > best_acc:
            best, best_acc = t, acc
    return best


def kfold_accuracy(d, same, fold):
    """10-fold accuracy (mean, sample std, per fold): each fold's threshold from the others."""
    accs = []
    for k in range(10):
        tr, te = fold != k, fold == k
        t = best_threshold(d[tr], same[tr])
        accs.append(np.mean((d[te] <= t) == same[te]))
    return float(np.mean(accs)), float(np.std(accs, ddof=1)), [float(x) for x in accs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lfw")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N distinct images (timing)")
    ap.add_argument("--out")
    ap.add_argument("--pairs", default="pairs.txt", help="pairs.txt (View 2) or pairsDevTest.txt")
    a = ap.parse_args()
    root = os.path.join(a.lfw, "lfw-deepfunneled")
    pairs = parse_pairs(os.path.join(a.lfw, "protocol", a.pairs), root)
    files = sorted({p for q in pairs for p in q[:2]})
    if a.limit:
        files = files[: a.limit]
    t0 = time.perf_counter()
    if a.jobs == 1:
        res = [encode(f) for f in files]
    else:
        with Pool(a.jobs) as pool:
            res = pool.map(encode, files, chunksize=8)
    wall = time.perf_counter() - t0
    rules = {}
    for r in res:
        rules[r[2]] = rules.get(r[2], 0) + 1
    out = {"images": len(files), "jobs": a.jobs, "wall_s": wall, "s_per_photo": wall / len(files),
           "photos_per_s": len(files) / wall, "face_choice": rules}
    if not a.limit:
        enc = {r[0]: np.array(r[1]) for r in res}
        d = np.array([np.sum((enc[x] - enc[y]) ** 2) for x, y, _, _ in pairs])
        same = np.array([s for _, _, s, _ in pairs])
        fold = np.array([k for _, _, _, k in pairs])
        acc, std, folds = kfold_accuracy(d, same, fold)
        out.update({"accuracy": acc, "std": std, "folds": folds,
                    "accuracy_at_0.6": float(np.mean((d < 0.36) == same))})
    print(json.dumps(out))
    if a.out:
        json.dump(out, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
