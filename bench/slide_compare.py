#!/usr/bin/env python3
"""Compares the nuclei of two `cellops-evaluate --slide ... --geojson` outputs (e.g. one tiled run
and one untiled pass of the same region): how many each found, how many are the same nucleus
pixel for pixel (equal polygons), and how many pair one-to-one at IoU >= 0.5 (greedy by IoU over
candidates whose centres lie within 20 px; shapely). Prints one JSON line.

  python3 bench/slide_compare.py TILED_OUT UNTILED_OUT
"""
import json
import sys
from pathlib import Path

from shapely.geometry import shape
from shapely.strtree import STRtree


def load(out):
    files = sorted(Path(out, "geojson").glob("*.geojson"))
    feats = []
    for f in files:
        feats += json.loads(f.read_text())["features"]
    return [shape(f["geometry"]) for f in feats]


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    key = lambda g: g.normalize().wkb
    same = len({key(g) for g in a} & {key(g) for g in b})
    tree = STRtree(b)
    pairs = []
    for i, g in enumerate(a):
        for j in tree.query(g.centroid.buffer(20)):
            h = b[j]
            inter = g.intersection(h).area
            if inter > 0:
                pairs.append((inter / g.union(h).area, i, int(j)))
    pairs.sort(reverse=True)
    used_a, used_b, matched, ious = set(), set(), 0, []
    for iou, i, j in pairs:
        if iou < 0.5 or i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        matched += 1
        ious.append(iou)
    print(json.dumps({
        "first": len(a), "second": len(b), "identical": same, "matched_iou50": matched,
        "mean_matched_iou": sum(ious) / max(len(ious), 1),
    }))


if __name__ == "__main__":
    main()
