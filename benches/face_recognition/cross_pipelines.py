"""Which part of a face pipeline costs accuracy: dlib's chips through our network, our chips
through dlib's network (docs/FACES.md part 3, "Where the difference is").

Set-up as in lfw_view2.py (venv with dlib-bin and face_recognition). Two modes:

Both take an optional last argument, the pairs file (pairs.txt, or pairsDevTest.txt with the
10 folds inside it of `faces eval --view devtest`).

  dlib-chips LFW OUT      dlib's own chips (HOG detector, the face containing the centre, 5-point
                          landmarks, get_face_chip 150 / 0.25) written as OUT/lfw-deepfunneled/
                          NAME/NAME_NNNN.jpg (PNG data) with OUT/protocol linked to LFW's; then
                          `cargo xtask faces eval --lfw OUT --view 2 --aligned-input` runs our
                          network on them.
  dlib-net LFW CHIPS      dlib's network (f32 weights) on the chips `faces eval --align
                          --dump-chips CHIPS` wrote; an image without a chip (no face box
                          contains the centre) uses the fixed LFW crop, as ours does. Prints
                          View 2 10-fold accuracy.
"""
import json, os, sys
from multiprocessing import Pool

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from lfw_view2 import kfold_accuracy, parse_pairs  # noqa: E402


def dlib_chip(args):
    src, dst = args
    import dlib, face_recognition
    from face_recognition import api
    from PIL import Image
    img = face_recognition.load_image_file(src)
    h, w = img.shape[:2]
    locs = face_recognition.face_locations(img)
    cx, cy = w / 2, h / 2
    inside = [l for l in locs if l[3] <= cx <= l[1] and l[0] <= cy <= l[2]]
    if inside:
        t, r, b, l = inside[0]
    elif locs:
        t, r, b, l = min(locs, key=lambda q: ((q[1] + q[3]) / 2 - cx) ** 2 + ((q[0] + q[2]) / 2 - cy) ** 2)
    else:
        t, r, b, l = 0, w, h, 0
    shape = api.pose_predictor_5_point(img, dlib.rectangle(l, t, r, b))
    chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    Image.fromarray(chip).save(dst, format="PNG")
    return src


def dlib_desc(args):
    path, chip_path = args
    import face_recognition
    from face_recognition import api
    from PIL import Image
    if os.path.exists(chip_path):
        chip = np.asarray(Image.open(chip_path).convert("RGB"))
    else:  # the fixed LFW crop: 115 x 115 at (67, 80), resized to 150
        img = Image.open(path).convert("RGB").crop((67, 80, 182, 195)).resize((150, 150), Image.BILINEAR)
        chip = np.asarray(img)
    return path, np.array(api.face_encoder.compute_face_descriptor(chip))


def main():
    mode, lfw, other = sys.argv[1], sys.argv[2], sys.argv[3]
    pairs_file = sys.argv[4] if len(sys.argv) > 4 else "pairs.txt"
    root = os.path.join(lfw, "lfw-deepfunneled")
    pairs = parse_pairs(os.path.join(lfw, "protocol", pairs_file), root)
    files = sorted({p for q in pairs for p in q[:2]})
    if mode == "dlib-chips":
        jobs = [(f, os.path.join(other, "lfw-deepfunneled", os.path.relpath(f, root))) for f in files]
        with Pool(2) as pool:
            pool.map(dlib_chip, jobs, chunksize=8)
        link = os.path.join(other, "protocol")
        if not os.path.exists(link):
            os.symlink(os.path.abspath(os.path.join(lfw, "protocol")), link)
        print(json.dumps({"chips": len(jobs), "out": other}))
    elif mode == "dlib-net":
        jobs = [(f, os.path.join(other, os.path.basename(os.path.dirname(f)),
                                 os.path.splitext(os.path.basename(f))[0] + ".png")) for f in files]
        missing = sum(not os.path.exists(c) for _, c in jobs)
        with Pool(2) as pool:
            enc = dict(pool.map(dlib_desc, jobs, chunksize=16))
        d = np.array([np.sum((enc[x] - enc[y]) ** 2) for x, y, _, _ in pairs])
        same = np.array([s for _, _, s, _ in pairs])
        fold = np.array([k for _, _, _, k in pairs])
        acc, std, _ = kfold_accuracy(d, same, fold)
        print(json.dumps({"accuracy": acc, "std": std, "images": len(files), "without_chip": missing}))
    else:
        sys.exit("mode: dlib-chips or dlib-net")


if __name__ == "__main__":
    main()
