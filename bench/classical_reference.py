#!/usr/bin/env python3
"""The classical line in scikit-image, for docs/benchmarks.md: the "15-line pipeline" a lab would
write (grey, Otsu threshold, fill holes, drop specks, distance-transform watershed from
`peak_local_max` seeds), scored with StarDist's matching (bench/matching_reference.py), pooled
and per category, on one split of DSB2018.

Images whose background is bright (histology, brightfield) are inverted first, by the same rule as
CellOps' `polarity: auto` (median above the middle of the 1st–99th percentile range): without it
Otsu's foreground is their background.

Usage: python3 bench/classical_reference.py DSB_DIR [--split test] [--min-size 10] [--min-distance 7]
Prints one JSON line: pooled and per-category F1/AP at IoU 0.5 and the seconds taken.
"""

import argparse
import csv
import json
import os
import sys
import time

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2gray
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.io import imread
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed

sys.path.insert(0, os.path.dirname(__file__))
from matching_reference import iou_matrix, match  # noqa: E402


def grey(img):
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    img = img.astype(float)
    lo, med, hi = np.percentile(img, [1, 50, 99])
    return img.max() - img if 2 * med > lo + hi else img


def classical(img, min_size, min_distance):
    g = grey(img)
    mask = g > threshold_otsu(g)
    mask = ndi.binary_fill_holes(mask)
    mask = remove_small_objects(mask, min_size)
    dist = ndi.distance_transform_edt(mask)
    parts, _ = ndi.label(mask)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=parts, exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=mask)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dsb")
    ap.add_argument("--split", default="test")
    ap.add_argument("--min-size", type=int, default=10)
    ap.add_argument("--min-distance", type=int, default=7)
    a = ap.parse_args()
    rows = [r for r in csv.DictReader(open(os.path.join(a.dsb, "manifest.csv"))) if r["split"] == a.split]
    counts = {}
    started = time.time()
    for r in rows:
        img = imread(os.path.join(a.dsb, "original", r["id"] + ".png"))
        truth = imread(os.path.join(a.dsb, "masks", r["id"] + "_mask.png")).astype(np.int64)
        pred = classical(img, a.min_size, a.min_distance)
        iou, _, ta, pa = iou_matrix(truth, pred)
        tp, _ = match(iou, 0.5)
        for key in ("all", r["category"]):
            c = counts.setdefault(key, [0, 0, 0])
            c[0] += tp
            c[1] += len(ta)
            c[2] += len(pa)
    seconds = time.time() - started
    out = {"split": a.split, "images": len(rows), "seconds": round(seconds, 2)}
    for key, (tp, nt, npred) in sorted(counts.items()):
        fp, fn = npred - tp, nt - tp
        out[key] = {"f1": 2 * tp / (2 * tp + fp + fn), "ap": tp / (tp + fp + fn), "tp": tp, "fp": fp, "fn": fn}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
