#!/usr/bin/env python3
"""OpenCV reference for `cellops-bench`: times cv2.equalizeHist and CLAHE over the same grey planes.

The grey planes are the *_grey.png files that `cellops-bench --write DIR` writes, so both sides
work on byte-identical input. Timing: all images are loaded into memory first; the whole loop over
all images is timed, `--reps` times, and the best is reported (as cellops-bench does).

With --compare, the *_eq.png and *_clahe.png that cellops-bench wrote next to each *_grey.png are
compared pixel by pixel with OpenCV's results on the same plane.

Needs: pip install numpy opencv-python-headless
"""

import argparse
import concurrent.futures
import glob
import json
import os
import sys
import time

import cv2
import numpy as np


def load(path):
    a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if a is None:
        sys.exit(f"cannot read {path}")
    if a.dtype != np.uint8 or a.ndim != 2:
        sys.exit(f"{path}: expected 8-bit grey, got {a.dtype} {a.shape}")
    return a


def best_of(reps, fn, planes, pool=None):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        if pool is None:
            for p in planes:
                fn(p)
        else:
            for _ in pool.map(fn, planes, chunksize=16):
                pass
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grey-dir", required=True, help="folder of *_grey.png written by cellops-bench --write")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (OpenCV parallelises inside CLAHE)")
    ap.add_argument("--clip-limit", type=float, default=2.0)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--image-threads", type=int, default=0,
                    help="also run images in parallel on a ThreadPoolExecutor of this many threads (cv2 releases "
                    "the GIL), as cellops-bench does; OpenCV's own threads are then set to 1")
    ap.add_argument("--compare", action="store_true", help="compare with cellops' *_eq.png / *_clahe.png")
    ap.add_argument("--worst", type=int, default=5, help="with --compare, list this many worst CLAHE images on stderr")
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(args.grey_dir, "*_grey.png")))
    if not files:
        sys.exit(f"no *_grey.png in {args.grey_dir}")
    planes = [load(f) for f in files]
    pool = None
    if args.image_threads > 0:
        cv2.setNumThreads(1)
        pool = concurrent.futures.ThreadPoolExecutor(args.image_threads)
        args.threads = args.image_threads
    else:
        cv2.setNumThreads(args.threads)
    clahe = cv2.createCLAHE(clipLimit=args.clip_limit, tileGridSize=(args.grid, args.grid))

    def clahe_apply(p):
        # A CLAHE object keeps scratch buffers: one per call when images run in parallel.
        return cv2.createCLAHE(clipLimit=args.clip_limit, tileGridSize=(args.grid, args.grid)).apply(p)

    # One warm-up pass each (first-call initialisation is not what we want to time).
    for p in planes[:8]:
        cv2.equalizeHist(p)
        clahe.apply(p)
    eq_ms = best_of(args.reps, cv2.equalizeHist, planes, pool)
    clahe_ms = best_of(args.reps, clahe.apply if pool is None else clahe_apply, planes, pool)

    pixels = sum(p.size for p in planes)
    out = {
        "tool": "opencv" if pool is None else "opencv-image-threads",
        "opencv": cv2.__version__,
        "images": len(planes),
        "megapixels": pixels / 1e6,
        "threads": args.threads,
        "equalize_ms": eq_ms,
        "clahe_ms": clahe_ms,
    }

    if args.compare:
        stats = {}
        per_image = []
        for kind, fn in (("equalize", cv2.equalizeHist), ("clahe", clahe.apply)):
            suffix = "_eq.png" if kind == "equalize" else "_clahe.png"
            max_abs, differing, images_differing = 0, 0, 0
            for f, p in zip(files, planes):
                ours = load(f[: -len("_grey.png")] + suffix)
                ref = fn(p)
                d = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
                n = int(np.count_nonzero(d))
                m = int(d.max())
                max_abs = max(max_abs, m)
                differing += n
                images_differing += n > 0
                if kind == "clahe" and n:
                    per_image.append((n / d.size, m, os.path.basename(f)[: -len("_grey.png")], p.shape))
            stats[kind] = {
                "max_abs_diff": max_abs,
                "differing_pixels": differing,
                "fraction_differing": differing / pixels,
                "images_differing": images_differing,
            }
        out["compare"] = stats
        per_image.sort(reverse=True)
        for frac, m, name, shape in per_image[: args.worst]:
            print(f"clahe worst: {name} {shape[1]}x{shape[0]} differing={frac:.4%} max_abs={m}", file=sys.stderr)

    print(json.dumps(out))


if __name__ == "__main__":
    main()
