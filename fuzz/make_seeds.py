#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets that are not in the project's own formats
(images, npy/npz, safetensors, TF.js, WFDB, NIfTI, LFW, Omniglot, CSV, CLI values) into
fuzz/seeds/NAME/. Small synthetic files, plus small real ones where the issue asks for them:
a MIT-BIH header and annotations (PhysioNet, ODC-BY 1.0: Moody & Mark 2001), the face
detector's TF.js manifest (face-api.js, MIT, bundled in crates/faces/assets), a nibabel test
volume (MIT). Needs numpy and Pillow; run with SHARED=path/to/shared for the real files.
The project's own formats (checkpoint, model spec, gallery) are written by
`cargo test -p fuzzing -- --ignored write_own_format_seeds`."""
import gzip, io, json, os, struct, sys, zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
SHARED = Path(os.environ.get("SHARED", HERE / "../../shared"))
SPLIT = b"\n--8<--\n"


def put(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def npy_bytes(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def npz_bytes(arrays, compress):
    b = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(b, **arrays)
    return b.getvalue()


# --- images
rgb = np.zeros((12, 16, 3), np.uint8)
rgb[..., 0] = np.arange(16) * 16
rgb[..., 1] = np.arange(12)[:, None] * 20
img = Image.fromarray(rgb)
for fmt, ext in [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tif"), ("WEBP", "webp"), ("PPM", "ppm")]:
    b = io.BytesIO()
    img.save(b, fmt)
    put("image", f"rgb.{ext}", b.getvalue())
b = io.BytesIO()
Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)).save(b, "PNG")
put("image", "grey16.png", b.getvalue())
b = io.BytesIO()
Image.fromarray(np.zeros((6, 5, 4), np.uint8)).save(b, "PNG")
put("image", "rgba.png", b.getvalue())
exif = Image.Exif()
exif[0x0112] = 6
b = io.BytesIO()
img.save(b, "JPEG", exif=exif)
put("image", "rotated.jpg", b.getvalue())
put("image", "grey.pgm", b"P5 4 3 255\n" + bytes(range(12)))

# --- npy / npz
put("npy", "f4.npy", npy_bytes(np.arange(6, dtype="<f4").reshape(2, 3)))
put("npy", "u1.npy", npy_bytes(np.arange(4, dtype=np.uint8)))
put("npy", "i8be.npy", npy_bytes(np.array(7, dtype=">i8")))
put("npy", "bool.npy", npy_bytes(np.array([[True, False], [False, True]])))
arrays = {"train_images": np.zeros((2, 3, 3, 3), np.uint8), "train_labels": np.array([[0], [1]], np.uint8)}
put("npz", "stored.npz", npz_bytes(arrays, False))
put("npz", "deflated.npz", npz_bytes(arrays, True))

# --- safetensors: header JSON (u64 length first), then the data
def safetensors(tensors):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data

put("safetensors", "small.safetensors", safetensors({
    "conv.weight": ("F32", [2, 1, 1, 1], struct.pack("<2f", 1.5, -2.0)),
    "conv.bias": ("F16", [2], np.array([0.5, 1.0], "<f2").tobytes()),
}))

# --- TF.js: manifest, split, weights
manifest = [{"paths": ["w.bin"], "weights": [
    {"name": "a", "shape": [2, 2], "dtype": "float32"},
    {"name": "q", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
]}]
put("tfjs", "small", json.dumps(manifest).encode() + SPLIT + struct.pack("<4f", 1, 2, 3, 4) + bytes([0, 1, 2]))
real = HERE / "../crates/faces/assets/face_detect/tiny_face_detector_model-weights_manifest.json"
put("tfjs", "tiny_face_detector_manifest", real.read_bytes() + SPLIT + bytes(64))

# --- WFDB
put("wfdb_header", "tiny.hea", "t 2 360 2\n# a comment\nt.dat 212 200 11 0 1 0 0 MLII\nt.dat 212 100(4)/mV 11 0 -2 0 0 V1\n")
mitdb = SHARED / "data/ecg/mitdb"
if (mitdb / "100.hea").exists():
    put("wfdb_header", "mitdb100.hea", (mitdb / "100.hea").read_bytes())
    put("wfdb_annotations", "mitdb100.atr", (mitdb / "100.atr").read_bytes())
    # The first 600 samples of record 100 with a header that says so (checksums recomputed).
    dat = (mitdb / "100.dat").read_bytes()[: 600 * 3]
    a = np.frombuffer(dat, np.uint8).reshape(-1, 3).astype(np.int32)
    s0 = a[:, 0] | ((a[:, 1] & 0x0F) << 8)
    s1 = a[:, 2] | ((a[:, 1] & 0xF0) << 4)
    s0 = np.where(s0 >= 2048, s0 - 4096, s0)
    s1 = np.where(s1 >= 2048, s1 - 4096, s1)
    c0, c1 = (int(np.int16(np.int64(s).sum() & 0xFFFF)) for s in (s0, s1))
    hea = f"100 2 360 600\n100.dat 212 200 11 1024 {s0[0]} {c0} 0 MLII\n100.dat 212 200 11 1024 {s1[0]} {c1} 0 V5\n"
    put("wfdb_record", "mitdb100_600", hea.encode() + SPLIT + dat)
w = lambda code, value: struct.pack("<H", (code << 10) | value)
put("wfdb_annotations", "by_hand.atr", w(1, 5) + w(59, 0) + struct.pack("<HH", 1, 4464) + w(5, 3) + w(63, 3) + b"(N\0\0" + w(0, 0))
put("wfdb_record", "tiny", b"t 2 360 2\nt.dat 212 200 11 0 1 2048 0 MLII\nt.dat 212 100(4)/mV 11 0 -2 -2050 0 V1\n" + SPLIT + bytes([0x01, 0xF0, 0xFE, 0xFF, 0x87, 0x00]))

# --- NIfTI: a 3 x 2 x 2 int16 volume, plain and gzip; a real one when available
hdr = bytearray(348)
struct.pack_into("<i", hdr, 0, 348)
struct.pack_into("<8h", hdr, 40, 3, 3, 2, 2, 1, 1, 1, 1)
struct.pack_into("<h", hdr, 70, 4)
struct.pack_into("<h", hdr, 72, 16)
struct.pack_into("<8f", hdr, 76, 1, 1, 1, 1, 1, 1, 1, 1)
struct.pack_into("<f", hdr, 108, 352)
struct.pack_into("<f", hdr, 112, 1)
hdr[344:348] = b"n+1\0"
vol = bytes(hdr) + bytes(4) + np.arange(12, dtype="<i2").tobytes()
put("nifti", "tiny.nii", vol)
put("nifti", "tiny.nii.gz", gzip.compress(vol))
anat = SHARED / "data/volumes/nibabel_testdata/anatomical.nii"
if anat.exists():
    put("nifti", "nibabel_anatomical.nii", anat.read_bytes())

# --- LFW protocol files
put("lfw_protocol", "pairs_dev", "1\nAlice\t1\t2\nAlice\t1\tBob\t1\n")
put("lfw_protocol", "pairs_view2", "2\t1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t3\nC\t2\tD\t1\n")
put("lfw_protocol", "people_dev", "2\nAlice\t3\nBob\t1\n")
put("lfw_protocol", "people_folds", "2\n1\nAlice\t3\n1\nBob\t2\n")

# --- Omniglot: an images array (characters, drawers, H, W) bool, and run labels
put("omniglot", "images.npz", npz_bytes({"images": np.ones((2, 2, 6, 6), bool)}, True))
put("omniglot", "class_labels.txt", "run01/test/item01.png run01/training/class01.png\nrun01/test/item02.png run01/training/class02.png\n")

# --- pairs CSV and command-line sizes
put("pairs_csv", "pairs.csv", "image_a,image_b,same\na/1.png,a/2.png,1\na/1.png,b/1.png,0\n")
for i, v in enumerate(["112x92", "1,2,30,20", "4294967295,0,1,1", "0x0", "4096x4096"]):
    put("cli_sizes", f"v{i}", v)
print("seeds written to", SEEDS)
