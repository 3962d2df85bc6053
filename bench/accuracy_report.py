#!/usr/bin/env python3
"""Pooled and per-category instance scores of an `evaluate` run on DSB2018, model beside the
classical line (threshold + distance watershed), from its summary.json and the dataset's
manifest.csv. Standard library only.

Usage: python3 bench/accuracy_report.py EVAL_DIR DSB_DIR
Prints a Markdown table and one JSON line.
"""

import csv
import json
import os
import sys


def at(metrics, t):
    for m in metrics["matching"]:
        if abs(m["thresh"] - t) < 1e-9:
            return m
    raise KeyError(t)


def main():
    out_dir, dsb = sys.argv[1], sys.argv[2]
    summary = json.load(open(os.path.join(out_dir, "summary.json")))
    category = {r["id"]: r["category"] for r in csv.DictReader(open(os.path.join(dsb, "manifest.csv")))}
    counts = {}
    for img in summary["images"]:
        cat = category.get(img["image"], "unknown")
        for which in ("metrics", "classical"):
            if img.get(which) is None:
                continue
            m = at(img[which], 0.5)
            for key in ("all", cat):
                c = counts.setdefault((which, key), [0, 0, 0])
                c[0] += m["tp"]
                c[1] += m["fp"]
                c[2] += m["fn_"] if "fn_" in m else m["fn"]
    rows = {}
    for (which, key), (tp, fp, fn) in counts.items():
        rows.setdefault(key, {})[which] = {
            "f1": 2 * tp / max(2 * tp + fp + fn, 1),
            "ap": tp / max(tp + fp + fn, 1),
            "tp": tp, "fp": fp, "fn": fn,
        }
    print("| category | model F1@0.5 | model AP@0.5 | classical F1@0.5 | classical AP@0.5 |")
    print("|---|---|---|---|---|")
    for key in sorted(rows, key=lambda k: (k != "all", k)):
        r = rows[key]
        m, c = r.get("metrics", {}), r.get("classical", {})
        print(f"| {key} | {m.get('f1', float('nan')):.4f} | {m.get('ap', float('nan')):.4f} | "
              f"{c.get('f1', float('nan')):.4f} | {c.get('ap', float('nan')):.4f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
