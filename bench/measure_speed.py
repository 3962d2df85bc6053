#!/usr/bin/env python3
"""Labelling and measurement speed: cellops (`measure-bench`) vs OpenCV and scikit-image.

Usage:
  cargo build --release -p cellops-bench --no-default-features --bin measure-bench
  python3 bench/measure_speed.py [--threads 1] [--rounds 5] [--sessions 3] [--sets gen,dsb]

Two image sets, each `<dir>/masks/<id>_mask.png` (label image, binarised as label > 0) with
`<dir>/original/<id>.png` (intensity; the first channel, R or grey, is measured):
  gen: four 1024x1024 images written once to --gen-dir by this script (seeded NumPy: 300, 500, 800
       and 1000 random ellipses, semi-axes 4-14 px, random orientation, overlapping where they fall;
       nuclei 60-200 grey levels plus noise on a background of about 20),
  dsb: the DSB2018 masks and originals (--dsb).
Both sides load and binarise every image before timing (not timed) and time the work in process:
  label        cellops connected_components (8-connectivity)       vs cv2.connectedComponents(ltype=CV_32S)
                                                                    and skimage.measure.label
  label-stats  cellops connected_components_with_stats              vs cv2.connectedComponentsWithStats
                                                                    (default algorithm, and CCL_BBDT)
  measure      cellops connected_components + regionprops + intensities (1 channel)
               vs skimage.measure.label + regionprops_table with the same properties (area, bbox,
               centroid, axis lengths, orientation, eccentricity, equivalent diameter, extent,
               perimeter, euler number, area_convex, solidity, feret_diameter_max, intensity
               mean/min/max/std) and the median through extra_properties ("+ median"), also without
               the median ("no median"; cellops always computes it, so that row flatters skimage).
Each session runs our binary (--rounds timed rounds after one warm-up round) and then the Python
side (the same), alternately; a row's time is the median over all rounds of all sessions. Ratios are
python_time / rust_time (above 1: cellops faster). Threads: OMP/OPENBLAS/MKL/numexpr threads and
cv2.setNumThreads are set to --threads on the Python side (RAYON_NUM_THREADS for ours); cellops
labels and measures on one thread whatever --threads says (the library does not parallelise these),
so --threads 2 only gives the Python/OpenCV side a second thread. Prints a Markdown table;
--json FILE also writes every measurement.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--sets", default="gen,dsb")
    p.add_argument("--tasks", default="label,label-stats,measure")
    p.add_argument("--dsb", default=os.path.join(os.path.dirname(__file__), "../../shared/data/dsb2018"))
    p.add_argument("--gen-dir", default="/tmp/cellops-measure-speed/gen")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images of each set")
    p.add_argument("--bin", default=os.environ.get("MEASURE_BENCH", "target/release/measure-bench"))
    p.add_argument("--json")
    return p.parse_args()


ARGS = parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import skimage  # noqa: E402
from skimage.measure import label as sk_label, regionprops_table  # noqa: E402

cv2.setNumThreads(ARGS.threads)

PROPERTIES = [
    "label", "area", "bbox", "centroid", "axis_major_length", "axis_minor_length", "orientation",
    "eccentricity", "equivalent_diameter_area", "extent", "perimeter", "euler_number", "area_convex",
    "solidity", "feret_diameter_max", "intensity_mean", "intensity_min", "intensity_max", "intensity_std",
]


def median_intensity(region_mask, intensity):
    return np.median(intensity[region_mask])


def generate(out):
    masks, originals = os.path.join(out, "masks"), os.path.join(out, "original")
    os.makedirs(masks, exist_ok=True)
    os.makedirs(originals, exist_ok=True)
    size = 1024
    rr, cc = np.mgrid[0:size, 0:size]
    for k, count in enumerate([300, 500, 800, 1000]):
        mpath = os.path.join(masks, f"gen{k}_mask.png")
        ipath = os.path.join(originals, f"gen{k}.png")
        if os.path.exists(mpath) and os.path.exists(ipath):
            continue
        rng = np.random.default_rng(k)
        labels = np.zeros((size, size), np.uint16)
        grey = rng.normal(20, 4, (size, size))
        for i in range(count):
            r0, c0 = rng.uniform(0, size, 2)
            a = rng.uniform(5, 14)
            b = rng.uniform(4, a)
            t = rng.uniform(0, np.pi)
            lo_r, hi_r = int(max(r0 - a - 1, 0)), int(min(r0 + a + 2, size))
            lo_c, hi_c = int(max(c0 - a - 1, 0)), int(min(c0 + a + 2, size))
            dr, dc = rr[lo_r:hi_r, lo_c:hi_c] - r0, cc[lo_r:hi_r, lo_c:hi_c] - c0
            u = dr * np.cos(t) + dc * np.sin(t)
            v = -dr * np.sin(t) + dc * np.cos(t)
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1
            labels[lo_r:hi_r, lo_c:hi_c][inside] = i + 1
            grey[lo_r:hi_r, lo_c:hi_c][inside] = rng.uniform(60, 200) + rng.normal(0, 10, inside.sum())
        cv2.imwrite(mpath, labels)
        cv2.imwrite(ipath, np.clip(grey, 0, 255).astype(np.uint8))


def mask_files(ds):
    d = os.path.join(ds, "masks")
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith("_mask.png"))
    return files[: ARGS.limit] if ARGS.limit else files


def load(mask_path):
    labels = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
    fg = labels > 0
    ipath = mask_path.replace("/masks/", "/original/").replace("_mask.png", ".png")
    img = cv2.imread(ipath, cv2.IMREAD_UNCHANGED)
    # cv2 reads BGR(A): the first channel in RGB order (what cellops measures) is index 2.
    grey = img[..., 2] if img.ndim == 3 else img
    return fg, fg.astype(np.uint8), np.ascontiguousarray(grey)


def py_task(task, images):
    """One round; returns (seconds, objects, check)."""
    objects, check = 0, 0.0
    t0 = time.perf_counter()
    for fg, fg8, grey in images:
        if task == "label":  # OpenCV
            n, _ = cv2.connectedComponents(fg8, connectivity=8, ltype=cv2.CV_32S)
            objects += n - 1
        elif task == "label-skimage":
            _, n = sk_label(fg, connectivity=2, return_num=True)
            objects += n
        elif task == "label-stats":
            n, _, stats, _ = cv2.connectedComponentsWithStats(fg8, connectivity=8, ltype=cv2.CV_32S)
            objects += n - 1
            check += float(stats[1:, cv2.CC_STAT_AREA].sum())
        elif task == "label-stats-bbdt":
            n, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(fg8, 8, cv2.CV_32S, cv2.CCL_BBDT)
            objects += n - 1
            check += float(stats[1:, cv2.CC_STAT_AREA].sum())
        elif task in ("measure", "measure-nomedian"):
            lab = sk_label(fg, connectivity=2)
            extra = (median_intensity,) if task == "measure" else ()
            t = regionprops_table(lab, intensity_image=grey, properties=PROPERTIES, extra_properties=extra)
            objects += len(t["label"])
            check += float((t["intensity_mean"] * t["area"]).sum())
        else:
            raise ValueError(task)
    return time.perf_counter() - t0, objects, check


ROWS = {
    # task: [(row name, python task), ...]; our task is the key.
    "label": [("label: cv2.connectedComponents", "label"), ("label: skimage.measure.label", "label-skimage")],
    "label-stats": [
        ("label + stats: cv2.connectedComponentsWithStats", "label-stats"),
        # With stats, OpenCV 5's default (Spaghetti) is ~2.5x slower than its BBDT: the stronger baseline.
        ("label + stats: cv2 …WithStatsWithAlgorithm(CCL_BBDT)", "label-stats-bbdt"),
    ],
    "measure": [
        ("label + measure: skimage (+ median)", "measure"),
        ("label + measure: skimage (no median)", "measure-nomedian"),
    ],
}


def main():
    generate(ARGS.gen_dir)
    sets = {"gen": ARGS.gen_dir, "dsb": ARGS.dsb}
    tasks = ARGS.tasks.split(",")
    results = []  # (set, row, python_times, rust_times, objects)
    for name in ARGS.sets.split(","):
        files = mask_files(sets[name])
        images = [load(f) for f in files]
        ours = {t: [] for t in tasks}
        theirs = {py: [] for t in tasks for _, py in ROWS[t]}
        counts = {}
        for s in range(ARGS.sessions):
            load1 = os.getloadavg()[0]
            print(f"[{name}] session {s + 1}/{ARGS.sessions}, load average {load1:.2f}", file=sys.stderr)
            out = subprocess.run(
                [ARGS.bin, "--rounds", str(ARGS.rounds), "--warmup", "1",
                 "--tasks", ",".join(tasks), *files],
                check=True, capture_output=True, text=True,
                env={**os.environ, "RAYON_NUM_THREADS": str(ARGS.threads)},
            ).stdout
            for line in out.splitlines():
                rec = json.loads(line)
                ours[rec["task"]] += rec["rounds_s"]
                counts[("cellops", rec["task"])] = (rec["objects"], rec["check"])
            for t in tasks:
                for _, py in ROWS[t]:
                    py_task(py, images)  # warm-up
                    for _ in range(ARGS.rounds):
                        secs, n, c = py_task(py, images)
                        theirs[py].append(secs)
                    counts[("python", py)] = (n, c)
        for t in tasks:
            for row, py in ROWS[t]:
                results.append((name, row, theirs[py], ours[t], counts[("python", py)], counts[("cellops", t)]))
    mp = {name: sum(load(f)[0].size for f in mask_files(sets[name])) / 1e6 for name in ARGS.sets.split(",")}
    print(f"\nthreads {ARGS.threads}; {ARGS.sessions} sessions x {ARGS.rounds} rounds; skimage "
          f"{skimage.__version__}, OpenCV {cv2.__version__}, NumPy {np.__version__}")
    print("| set | python / OpenCV side | objects (py / ours) | python s | cellops s | ratio |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name, row, py_t, rs_t, pyc, rsc in results:
        pm, rm = float(np.median(py_t)), float(np.median(rs_t))
        print(f"| {name} ({len(mask_files(sets[name]))} images, {mp[name]:.1f} MP) | {row} | {pyc[0]} / {rsc[0]} "
              f"| {pm:.4f} | {rm:.4f} | **{pm / rm:.2f}×** |")
        if pyc[0] != rsc[0]:
            print(f"  WARNING: object counts differ ({pyc[0]} vs {rsc[0]})", file=sys.stderr)
        if pyc[1] and rsc[1] and abs(pyc[1] - rsc[1]) > 1e-6 * abs(rsc[1]):
            print(f"  WARNING: checks differ ({pyc[1]} vs {rsc[1]})", file=sys.stderr)
        rows.append({"set": name, "row": row, "python_s": py_t, "rust_s": rs_t, "python_median_s": pm,
                     "rust_median_s": rm, "ratio": pm / rm, "objects": [pyc[0], rsc[0]], "threads": ARGS.threads})
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
