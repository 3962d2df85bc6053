#!/usr/bin/env python3
"""Checks cellops-measure's distance transform + watershed split of binary masks against scikit-image.

Each ground-truth instance mask of the DSB 2018 set gives a binary input (label > 0); it is split by
(a) connected components (8-connectivity, the baseline), (b) scikit-image's standard recipe
(distance_transform_edt + peak_local_max(min_distance, labels) + watershed(-dist, markers, mask)),
with min_distance tuned on the train split, and (c) ours (`split_masks` example, label PNGs), and
each is scored against the true instances: F1 at IoU 0.5, StarDist conventions (optimal one-to-one
matching by IoU, a pair counts when IoU >= 0.5, TP/FP/FN pooled over images). Also compares our
distance transform with scipy's on every mask.

Usage:
  B=target/release/examples/split_masks   # cargo build --release -p cellops-measure --example split_masks
  $B --out /tmp/ours --edt /tmp/edt $(ls DATA/masks/*_mask.png) > /tmp/ours.jsonl
  python3 bench/watershed_reference.py DATA /tmp/ours /tmp/edt
"""

import csv
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.feature import peak_local_max
from skimage.io import imread
from skimage.measure import label
from skimage.segmentation import watershed

MIN_DISTANCES = [3, 5, 7, 10, 15]


def counts(truth, pred, thresh=0.5):
    """TP, FP, FN of the optimal one-to-one matching by IoU."""
    t_ids, t = np.unique(truth, return_inverse=True)
    p_ids, p = np.unique(pred, return_inverse=True)
    t, p = t.ravel(), p.ravel()
    inter = np.zeros((len(t_ids), len(p_ids)), dtype=np.int64)
    np.add.at(inter, (t, p), 1)
    # Drop background (label 0 sorts first if present).
    if t_ids[0] == 0:
        inter = inter[1:]
    if p_ids[0] == 0:
        inter = inter[:, 1:]
    nt, np_ = inter.shape
    if nt == 0 or np_ == 0:
        return 0, np_, nt
    ta = np.bincount(t, minlength=len(t_ids))[-nt:]
    pa = np.bincount(p, minlength=len(p_ids))[-np_:]
    iou = inter / (ta[:, None] + pa[None, :] - inter)
    rows, cols = linear_sum_assignment(-iou)
    tp = int((iou[rows, cols] >= thresh).sum())
    return tp, np_ - tp, nt - tp


def recipe(fg, min_distance):
    dist = ndi.distance_transform_edt(fg)
    coords = peak_local_max(dist, min_distance=min_distance, labels=label(fg))
    peaks = np.zeros(fg.shape, dtype=bool)
    peaks[tuple(coords.T)] = True
    markers, _ = ndi.label(peaks)
    return watershed(-dist, markers, mask=fg)


def f1(c):
    tp, fp, fn = c
    return 2 * tp / max(2 * tp + fp + fn, 1)


def main():
    data, ours_dir, edt_dir = (Path(a) for a in sys.argv[1:4])
    rows = list(csv.DictReader(open(data / "manifest.csv")))
    truths = {r["id"]: imread(data / "masks" / f"{r['id']}_mask.png") for r in rows}
    split = {r["id"]: r["split"] for r in rows}

    def pooled(fn, ids):
        total = np.zeros(3, dtype=np.int64)
        for i in ids:
            total += counts(truths[i], fn(i))
        return total

    train = [i for i in truths if split[i] == "train"]
    test = [i for i in truths if split[i] == "test"]
    every = list(truths)

    # Tune skimage's min_distance on train.
    tuned = {}
    for md in MIN_DISTANCES:
        tuned[md] = f1(pooled(lambda i: recipe(truths[i] > 0, md), train))
        print(f"skimage recipe min_distance={md}: train F1@0.5 {tuned[md]:.4f}")
    best = max(tuned, key=tuned.get)

    methods = {
        "connected components": lambda i: label(truths[i] > 0),
        f"skimage recipe (min_distance={best})": lambda i: recipe(truths[i] > 0, best),
        "ours": lambda i: imread(ours_dir / f"{i}_mask.png"),
    }
    for name, fn in methods.items():
        line = []
        for part, ids in (("train", train), ("test", test), ("all", every)):
            c = pooled(fn, ids)
            line.append(f"{part} {f1(c):.4f} (TP {c[0]} FP {c[1]} FN {c[2]})")
        print(f"{name}: " + "; ".join(line))

    start = time.perf_counter()
    for i in every:
        recipe(truths[i] > 0, best)
    print(f"skimage recipe wall time over {len(every)} masks: {time.perf_counter() - start:.2f} s")

    worst = 0.0
    for i in every:
        fg = truths[i] > 0
        ref = ndi.distance_transform_edt(fg)
        d = np.fromfile(edt_dir / f"{i}_mask.f64", dtype="<f8").reshape(fg.shape)
        worst = max(worst, float(np.abs(d - ref).max()))
    print(f"distance transform: max |ours - scipy| over {len(every)} masks = {worst:g}")
    return 0 if worst <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
