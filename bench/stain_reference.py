#!/usr/bin/env python3
"""Checks cellops' colour deconvolution and per-nucleus optical densities against scikit-image.

Takes the RGB (histology) images of DSB2018 with their instance masks, runs
`cellops-evaluate --masks` on them with an IHC parameter file (H-DAB vectors), and recomputes
every nucleus's mean haematoxylin and DAB optical density with scikit-image's
`separate_stains` (same matrix: the unit H and DAB vectors and their normalised cross product).
scikit-image scales optical densities by 1/log10(1e6) = 1/6, so cellops' values must equal 6x
scikit-image's. Also recomputes the DAB class of every nucleus and the per-image H-score.

Usage: bench/stain_reference.py [CELLOPS_EVALUATE] [DSB]
  CELLOPS_EVALUATE  binary [target/release/cellops-evaluate]
  DSB               dataset [../shared/data/dsb2018 beside the repository]
Needs numpy, scikit-image, pillow.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from skimage.color import separate_stains

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/cellops-evaluate")
DSB = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "dsb2018")

H = np.array([0.651, 0.701, 0.290])
D = np.array([0.269, 0.568, 0.778])
THRESHOLDS = (0.2, 0.4, 0.6)
PARAMS = f"""description: stain reference check
pixel_size_um: 0.5
stain:
  vectors: {{ haematoxylin: {H.tolist()}, dab: {D.tolist()} }}
  dab_od_thresholds: {{ weak: {THRESHOLDS[0]}, moderate: {THRESHOLDS[1]}, strong: {THRESHOLDS[2]} }}
measurements: [area]
"""


def main():
    with open(os.path.join(DSB, "manifest.csv")) as f:
        ids = [r["id"] for r in csv.DictReader(f) if r["category"] == "histology_rgb"]
    tmp = tempfile.mkdtemp(prefix="stain-ref-")
    for sub in ("original", "masks"):
        os.makedirs(os.path.join(tmp, "data", sub))
    for i in ids:
        os.symlink(os.path.join(DSB, "original", i + ".png"), os.path.join(tmp, "data/original", i + ".png"))
        os.symlink(os.path.join(DSB, "masks", i + "_mask.png"), os.path.join(tmp, "data/masks", i + "_mask.png"))
    params = os.path.join(tmp, "ihc.yaml")
    with open(params, "w") as f:
        f.write(PARAMS)
    out = os.path.join(tmp, "eval")
    subprocess.run(
        [BIN, "--images", os.path.join(tmp, "data"), "--masks", os.path.join(tmp, "data/masks"),
         "--params", params, "--output", out, "--masks-kind", "instances"],
        check=True, stdout=subprocess.DEVNULL)
    ours = {}
    with open(os.path.join(out, "objects.csv")) as f:
        for r in csv.DictReader(f):
            ours[(r["Image"], int(r["ObjectNumber"]))] = (
                float(r["Intensity_MeanOD_Haematoxylin"]), float(r["Intensity_MeanOD_DAB"]), r["Classify_DAB"])
    with open(os.path.join(out, "summary.json")) as f:
        summary = {im["image"]: im for im in json.load(f)["images"]}

    h, d = H / np.linalg.norm(H), D / np.linalg.norm(D)
    r = np.cross(h, d)
    r /= np.linalg.norm(r)
    conv = np.linalg.inv(np.array([h, d, r]))
    worst_h = worst_d = 0.0
    class_diff = hscore_diff = 0
    n = 0
    for i in ids:
        rgb = np.asarray(Image.open(os.path.join(DSB, "original", i + ".png")).convert("RGB"))
        labels = np.asarray(Image.open(os.path.join(DSB, "masks", i + "_mask.png")))
        stains = separate_stains(rgb, conv) * 6.0
        counts = [0, 0, 0, 0]
        for lab in np.unique(labels):
            if lab == 0:
                continue
            m = labels == lab
            mh, md = stains[..., 0][m].mean(), stains[..., 1][m].mean()
            oh, od, oc = ours[(i, int(lab))]
            worst_h = max(worst_h, abs(mh - oh))
            worst_d = max(worst_d, abs(md - od))
            cls = sum(md >= t for t in THRESHOLDS)
            counts[cls] += 1
            class_diff += ["negative", "1+", "2+", "3+"][cls] != oc
            n += 1
        total = sum(counts)
        h_score = 100.0 * (counts[1] + 2 * counts[2] + 3 * counts[3]) / total if total else None
        theirs = summary[i].get("h_score")
        if h_score is not None and abs(h_score - theirs) > 1e-9:
            hscore_diff += 1
    print(f"images {len(ids)}, nuclei {n}")
    print(f"max |haematoxylin OD difference| {worst_h:.3g}, max |DAB OD difference| {worst_d:.3g}")
    print(f"nuclei with a different DAB class: {class_diff}; images with a different H-score: {hscore_diff}")
    ok = worst_h < 1e-6 and worst_d < 1e-6 and class_diff == 0 and hscore_diff == 0
    print("AGREE" if ok else "DIFFER")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
