#!/usr/bin/env python3
"""Python/OpenCV reference for `cellops build` on the DSB2018 set (paper layout).

Does, per item, the work that

    cellops build --dataset DSB --output OUT --resize 256x256 --equalize clahe \
                  --split-file DSB/manifest.csv

does:

* read original/<id>.png and masks/<id>_mask.png, sha256 both files;
* decode both (cv2.imdecode, IMREAD_UNCHANGED); validate: mask is a single-channel integer image of
  the image's size; objects = number of distinct non-zero labels; duplicate images (same sha256)
  are errors;
* drop alpha (RGBA -> RGB), keep grey as grey;
* resize the image to WxH with INTER_AREA when shrinking (both axes <= source), INTER_LINEAR
  otherwise; the mask with INTER_NEAREST; count objects lost by resizing; relabel the mask
  sequentially (1..n), as cellops does;
* CLAHE (clip 2, grid 8x8) on Y of YCrCb for colour images, on the plane for grey ones;
* encode PNGs (cv2.imencode, OpenCV's default "fast" PNG settings), sha256 them, write them to
  <split>/original/<id>.png and <split>/masks/<id>_mask.png (16-bit mask);
* write manifest.json with per-item source and output sha256s.

Like cellops, it writes into a staging folder beside the output and renames it at the end (and
writes nothing if any item has an error). It has no incremental mode: every run prepares every
item. Parallelism: multiprocessing.Pool(--jobs) over items, OpenCV's own threads set to 1 in each
worker (with --jobs 1, one process, OpenCV threads also 1).

Needs: pip install numpy opencv-python-headless
"""

import argparse
import csv
import hashlib
import json
import os
import shutil
import sys
import time
from multiprocessing import Pool

import cv2
import numpy as np

ARGS = None
CLAHE = None


def init_worker(args):
    global ARGS, CLAHE
    ARGS = args
    cv2.setNumThreads(1)
    CLAHE = cv2.createCLAHE(clipLimit=args.clip_limit, tileGridSize=(args.grid, args.grid))


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def encode_png(a, path):
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    return buf.tobytes()


def process(task):
    """One item: returns (entry or None, [problems], image_sha256)."""
    item_id, split = task
    root, staging = ARGS.dataset, ARGS.staging
    img_rel = f"original/{item_id}.png"
    mask_rel = f"masks/{item_id}_mask.png"
    problems = []
    try:
        with open(os.path.join(root, img_rel), "rb") as f:
            img_bytes = f.read()
        with open(os.path.join(root, mask_rel), "rb") as f:
            mask_bytes = f.read()
    except OSError as e:
        return None, [f"error: unreadable: {e}"], None
    img_sha, mask_sha = sha256(img_bytes), sha256(mask_bytes)

    img = cv2.imdecode(np.frombuffer(img_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
    mask = cv2.imdecode(np.frombuffer(mask_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None, [f"error: {img_rel}: cannot decode"], img_sha
    if mask is None:
        return None, [f"error: {mask_rel}: cannot decode"], img_sha
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        return None, [f"error: {mask_rel}: mask must be single-channel integer, got {mask.dtype} {mask.shape}"], img_sha
    if mask.shape != img.shape[:2]:
        return None, [f"error: {mask_rel}: mask is {mask.shape[1]}x{mask.shape[0]} but image is {img.shape[1]}x{img.shape[0]}"], img_sha
    labels = np.unique(mask)
    objects = int(np.count_nonzero(labels))
    if objects == 0:
        problems.append(f"warning: {mask_rel}: mask has no objects")

    h, w = img.shape[:2]
    channels = 1 if img.ndim == 2 else img.shape[2]
    bit_depth = 16 if img.dtype == np.uint16 else 8
    # Channels: alpha dropped, grey stays grey (OpenCV works in BGR order; imencode writes RGB).
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.ndim == 3 and img.shape[2] == 2:
        img = np.ascontiguousarray(img[:, :, 0])

    # Resize.
    tw, th = ARGS.width, ARGS.height
    if (tw, th) != (w, h):
        interp = cv2.INTER_AREA if (tw <= w and th <= h) else cv2.INTER_LINEAR
        img = cv2.resize(img, (tw, th), interpolation=interp)
        mask = cv2.resize(mask, (tw, th), interpolation=cv2.INTER_NEAREST)
    # Sequential relabelling (cellops writes labels 1..n), and objects lost at the output size.
    uniq, inv = np.unique(mask, return_inverse=True)
    if uniq[0] != 0:
        inv = inv + 1
    mask = inv.reshape(mask.shape).astype(np.uint16)
    out_objects = int(np.count_nonzero(uniq))
    if out_objects < objects:
        problems.append(f"warning: {mask_rel}: {objects - out_objects} of {objects} objects vanish at the output size")

    # CLAHE: on Y of YCrCb for colour, on the plane for grey.
    if img.ndim == 3:
        ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)
        ycc[:, :, 0] = CLAHE.apply(np.ascontiguousarray(ycc[:, :, 0]))
        img = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)
    else:
        img = CLAHE.apply(img)

    out_img_rel = f"{split}/original/{item_id}.png"
    out_mask_rel = f"{split}/masks/{item_id}_mask.png"
    img_png = encode_png(img, out_img_rel)
    mask_png = encode_png(mask, out_mask_rel)
    for rel, data in ((out_img_rel, img_png), (out_mask_rel, mask_png)):
        with open(os.path.join(staging, rel), "wb") as f:
            f.write(data)
    entry = {
        "id": item_id,
        "split": split,
        "image": img_rel,
        "mask": [mask_rel],
        "image_sha256": img_sha,
        "mask_sha256": mask_sha,
        "size": [w, h],
        "channels": channels,
        "bit_depth": bit_depth,
        "objects": objects,
        "outputs": [
            {
                "image": out_img_rel,
                "mask": out_mask_rel,
                "image_sha256": sha256(img_png),
                "mask_sha256": sha256(mask_png),
                "size": [img.shape[1], img.shape[0]],
                "channels": 1 if img.ndim == 2 else img.shape[2],
                "bit_depth": 8,
                "objects": out_objects,
            }
        ],
    }
    return entry, problems, img_sha


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="folder with original/, masks/ and manifest.csv")
    ap.add_argument("--output", required=True)
    ap.add_argument("--split-file", help="CSV with id and split columns [default: DATASET/manifest.csv]")
    ap.add_argument("--resize", default="256x256", help="WxH")
    ap.add_argument("--clip-limit", type=float, default=2.0)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (1: no pool)")
    args = ap.parse_args()
    args.width, args.height = (int(v) for v in args.resize.lower().split("x"))
    split_file = args.split_file or os.path.join(args.dataset, "manifest.csv")
    t0 = time.perf_counter()

    with open(split_file, newline="") as f:
        splits = {row["id"]: row["split"] for row in csv.DictReader(f)}
    ids = sorted(n[:-4] for n in os.listdir(os.path.join(args.dataset, "original")) if n.endswith(".png"))
    problems = []
    tasks = []
    for i in ids:
        if i not in splits:
            problems.append(f"error: {i}: not in the split file")
        elif not os.path.exists(os.path.join(args.dataset, "masks", f"{i}_mask.png")):
            problems.append(f"error: {i}: no mask")
        else:
            tasks.append((i, splits[i]))

    out = os.path.abspath(args.output)
    staging = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for s in sorted(set(splits.values())):
        os.makedirs(os.path.join(staging, s, "original"))
        os.makedirs(os.path.join(staging, s, "masks"))
    args.staging = staging

    if args.jobs == 1:
        init_worker(args)
        results = [process(t) for t in tasks]
    else:
        with Pool(args.jobs, initializer=init_worker, initargs=(args,)) as pool:
            results = pool.map(process, tasks, chunksize=8)

    entries, seen = [], {}
    for (item_id, _), (entry, probs, img_sha) in zip(tasks, results):
        problems.extend(probs)
        if img_sha is not None:
            if img_sha in seen:
                problems.append(f"error: {item_id}: same content as {seen[img_sha]}")
            else:
                seen[img_sha] = item_id
        if entry is not None:
            entries.append(entry)
    errors = [p for p in problems if p.startswith("error")]
    for p in problems:
        print(p, file=sys.stderr)
    if errors:
        shutil.rmtree(staging, ignore_errors=True)
        sys.exit(f"{len(errors)} errors: nothing written")

    order = {"train": 0, "val": 1, "test": 2}
    entries.sort(key=lambda e: (order.get(e["split"], 3), e["id"]))
    counts = {
        "images": len(entries),
        **{s: sum(e["split"] == s for e in entries) for s in ("train", "val", "test")},
        "outputs": len(entries),
        "objects": sum(e["objects"] for e in entries),
    }
    manifest = {
        "tool": {"name": "build_reference.py", "opencv": cv2.__version__, "numpy": np.__version__},
        "source": {"root": args.dataset},
        "config": {"resize": [args.width, args.height], "equalize": {"method": "clahe", "clip_limit": args.clip_limit, "tile_grid": [args.grid, args.grid]}},
        "counts": counts,
        "items": entries,
    }
    with open(os.path.join(staging, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(staging, out)
    print(json.dumps({"tool": "build_reference.py", "jobs": args.jobs, "seconds": round(time.perf_counter() - t0, 3), **counts}))


if __name__ == "__main__":
    main()
