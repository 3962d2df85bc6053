#!/usr/bin/env python3
"""Independent reference for cellops-measure's metrics, written from the published definitions:
StarDist's `matching` (IoU matrix, linear_sum_assignment on
-(iou >= t) - iou / (2 * min(n_true, n_pred)), TP = matched pairs with IoU >= t; pooled over images
as `matching_dataset(by_image=False)` does) and the aggregated Jaccard index of Kumar et al. 2017
(each true object takes the prediction of highest IoU; unused predictions join the union).

Usage: python3 bench/matching_reference.py DIR [--compare cellops.json]
DIR holds <k>_true.png / <k>_pred.png label pairs (`unet-eval --write DIR`). With --compare, the
JSON line `unet-eval` printed is checked field by field (|difference| <= 1e-9) and the worst
difference is printed; exit status 1 on disagreement.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.io import imread

THRESHOLDS = (0.5, 0.75, 0.9)


def iou_matrix(t, p):
    t_ids = np.unique(t[t > 0])
    p_ids = np.unique(p[p > 0])
    t_map = {v: i for i, v in enumerate(t_ids)}
    p_map = {v: i for i, v in enumerate(p_ids)}
    inter = np.zeros((len(t_ids), len(p_ids)), dtype=np.int64)
    both = (t > 0) & (p > 0)
    for a, b in zip(t[both], p[both]):
        inter[t_map[a], p_map[b]] += 1
    t_area = np.array([(t == v).sum() for v in t_ids], dtype=np.int64)
    p_area = np.array([(p == v).sum() for v in p_ids], dtype=np.int64)
    union = t_area[:, None] + p_area[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou, inter, t_area, p_area


def match(iou, thresh):
    n_true, n_pred = iou.shape
    n_matched = min(n_true, n_pred)
    if n_matched == 0 or not np.any(iou >= thresh):
        return 0, 0.0
    costs = -(iou >= thresh).astype(float) - iou / (2 * n_matched)
    r, c = linear_sum_assignment(costs)
    ok = iou[r, c] >= thresh
    return int(ok.sum()), float(iou[r, c][ok].sum())


def aji(iou, inter, t_area, p_area):
    c = u = 0
    used = np.zeros(len(p_area), dtype=bool)
    for i in range(len(t_area)):
        if iou.shape[1] == 0 or iou[i].max() == 0:
            u += t_area[i]
            continue
        j = int(np.argmax(iou[i]))
        c += inter[i, j]
        u += t_area[i] + p_area[j] - inter[i, j]
        used[j] = True
    u += p_area[~used].sum()
    return int(c), int(u)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--compare")
    a = ap.parse_args()
    tp = {t: 0 for t in THRESHOLDS}
    ssum = {t: 0.0 for t in THRESHOLDS}
    n_true = n_pred = 0
    both = t_fg = p_fg = 0
    aji_c = aji_u = 0
    for tf in sorted(glob.glob(os.path.join(a.dir, "*_true.png"))):
        t = imread(tf).astype(np.int64)
        p = imread(tf.replace("_true.png", "_pred.png")).astype(np.int64)
        iou, inter, ta, pa = iou_matrix(t, p)
        n_true += len(ta)
        n_pred += len(pa)
        both += int(((t > 0) & (p > 0)).sum())
        t_fg += int((t > 0).sum())
        p_fg += int((p > 0).sum())
        c, u = aji(iou, inter, ta, pa)
        aji_c += c
        aji_u += u
        for th in THRESHOLDS:
            k, s = match(iou, th)
            tp[th] += k
            ssum[th] += s
    out = {"pixel_dice": 2 * both / (t_fg + p_fg), "pixel_iou": both / (t_fg + p_fg - both), "aji": aji_c / aji_u, "matching": []}
    for th in THRESHOLDS:
        k, fp, fn = tp[th], n_pred - tp[th], n_true - tp[th]
        out["matching"].append({
            "thresh": th, "tp": k, "fp": fp, "fn": fn,
            "precision": k / (k + fp) if k else 0.0, "recall": k / (k + fn) if k else 0.0,
            "accuracy": k / (k + fp + fn) if k else 0.0, "f1": 2 * k / (2 * k + fp + fn) if k else 0.0,
            "n_true": n_true, "n_pred": n_pred,
            "mean_true_score": ssum[th] / n_true if k else 0.0,
            "mean_matched_score": ssum[th] / k if k else 0.0,
            "panoptic_quality": ssum[th] / (k + fp / 2 + fn / 2) if k else 0.0,
        })
    print(json.dumps(out))
    if a.compare:
        ours = json.loads(open(a.compare).read())
        worst = 0.0
        bad = []
        def cmp(name, x, y):
            nonlocal worst
            d = abs(float(x) - float(y))
            worst = max(worst, d)
            if d > 1e-9:
                bad.append(f"{name}: reference {x}, cellops {y}")
        for k in ("pixel_dice", "pixel_iou", "aji"):
            cmp(k, out[k], ours[k])
        for r, o in zip(out["matching"], ours["matching"]):
            for k in r:
                cmp(f"{k}@{r['thresh']}", r[k], o[k])
        print(f"worst |difference|: {worst:.3g}", file=sys.stderr)
        if bad:
            print("\n".join(bad), file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
