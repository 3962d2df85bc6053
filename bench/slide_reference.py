#!/usr/bin/env python3
"""Python reference for `cellops-evaluate --slide`: the same work done with the tools a lab would
use — OpenSlide-Python reads the slide, the same U-Net (the bundle's weights, mapped onto PyTorch by
bench/serve_reference.py's `load_model`, golden-checked) predicts, SciPy/scikit-image separate the
nuclei (distance transform, h-maxima, watershed) and measure them (regionprops) — a benchmark
baseline, not a product.

As the Rust side (crates/libs/analysis/src/slide):
  * an overview (the smallest level still >= 2048 px on the region's longer side, every k-th pixel)
    gives the tissue (saturation smoothed over ~25 µm, Otsu) and one calibration for every tile:
    the grey levels at the bundle's percentiles (1 / 99.8) of the tissue, and the polarity;
  * the tissue's bounds, grown by the overlap, are cut into cores of --tile px read with --overlap
    around them; tiles whose read area touches no tissue are skipped;
  * the model sees every tile at one factor, target diameter x MPP / nucleus_diameter_um, rounded
    to 1/32 (from the parameter file; never estimated per tile);
  * post-processing values: the parameter file's, else the bundle's tuned ones at the model's scale;
  * a nucleus belongs to the tile whose core holds its centroid; its row is written to a CSV as it
    is found.
Deliberate simplifications (the cost is the same order): each tile goes through the network in one
pass (the Rust predictor cuts it into 256 px tiles with 32 px overlap and blends them); objects under
the minimum area are removed, not merged; fewer columns than the Rust table.

Usage (the venv of bench/slide.sh; OpenSlide from the openslide-bin wheel):
  python bench/slide_reference.py --slide S.tif --bundle models/nuclei --params P.yaml --out rows.csv
Prints one JSON line: tiles, nuclei, seconds (total and per phase).
"""

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_reference as ref  # noqa: E402

OVERVIEW_SIDE = 2048
TISSUE_SMOOTHING_UM = 25.0
MIN_CONTRAST = 8.0
FACTOR_STEPS = 32.0


def overview(slide, side=OVERVIEW_SIDE):
    """The whole slide, at most `side` px on its longer side: (RGB array, level-0 px per pixel)."""
    w0, h0 = slide.dimensions
    longer = max(w0, h0)
    level = 0
    for i, ds in enumerate(slide.level_downsamples):
        if longer / ds >= side:
            level = i
    lw, lh = slide.level_dimensions[level]
    k = max(1, math.ceil(max(lw, lh) / side))
    rows = []
    band = 64 * k
    for y in range(0, lh, band):
        h = min(band, lh - y)
        ds = slide.level_downsamples[level]
        img = np.asarray(slide.read_region((0, int(round(y * ds))), level, (lw, h)))[..., :3]
        rows.append(img[::k, ::k])
    return np.concatenate(rows), slide.level_downsamples[level] * k


def tissue(rgb, um_per_px):
    """Saturation (max - min) smoothed by two box blurs over ~25 µm, above Otsu's threshold."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    sat = (rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)).astype(np.uint8)
    r = int(round(TISSUE_SMOOTHING_UM / um_per_px / 2.0))
    smooth = sat.astype(np.float32)
    if r > 0:
        for _ in range(2):
            smooth = np.round(ndi.uniform_filter(smooth, size=2 * r + 1, mode="nearest"))
    t = threshold_otsu(smooth.astype(np.uint8))
    above, below = smooth[smooth > t], smooth[smooth <= t]
    if above.size == 0 or below.size == 0 or above.mean() - below.mean() < MIN_CONTRAST:
        return np.ones(sat.shape, bool)
    return smooth > t


def tiles(region, tile, overlap):
    x0, y0, w, h = region
    for y in range(y0, y0 + h, tile):
        for x in range(x0, x0 + w, tile):
            cx1, cy1 = min(x + tile, x0 + w), min(y + tile, y0 + h)
            rx, ry = max(x - overlap, x0), max(y - overlap, y0)
            yield (x, y, cx1, cy1), (rx, ry, min(cx1 + overlap, x0 + w), min(cy1 + overlap, y0 + h))


def main():
    import openslide
    import torch
    import torch.nn.functional as F
    from skimage.measure import regionprops_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slide", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--params", required=True, help="a parameter file with nucleus_diameter_um")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--overlap", type=int, default=96)
    ap.add_argument("--out", required=True, help="the nuclei's rows (CSV)")
    a = ap.parse_args()
    started = time.perf_counter()
    analyser = ref.Analyser(a.bundle, [a.params], estimate_scale=False)
    t = analyser.types[Path(a.params).stem]
    target = float(analyser.meta["preprocessing"]["scale"]["diameter_px"])
    slide = openslide.OpenSlide(a.slide)
    mpp = float(slide.properties.get("openslide.mpp-x", t.pixel_size_um))
    d_um = float(t.raw["nucleus_diameter_um"])
    factor = round(min(max(target * mpp / d_um, 0.25), 4.0) * FACTOR_STEPS) / FACTOR_STEPS
    w0, h0 = slide.dimensions
    ov, ds = overview(slide)
    mask = tissue(ov, mpp * ds)
    ys, xs = np.nonzero(mask)
    region = (0, 0, w0, h0)
    if xs.size:
        x0, y0 = max(int(xs.min() * ds) - a.overlap, 0), max(int(ys.min() * ds) - a.overlap, 0)
        x1 = min(int(math.ceil((xs.max() + 1) * ds)) + a.overlap, w0)
        y1 = min(int(math.ceil((ys.max() + 1) * ds)) + a.overlap, h0)
        region = (x0, y0, x1 - x0, y1 - y0)
    grey_tissue = ref.to_grey(ov[mask] if xs.size else ov.reshape(-1, 3))
    lo, hi = np.percentile(grey_tissue, [analyser.norm_low, analyser.norm_high])
    lut = np.clip(np.round((np.arange(256) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    invert = analyser.polarity == "invert" or (analyser.polarity == "auto" and ref.bright_background(lut[grey_tissue]))
    thr, h_px, hole_px, min_area_px = t.resolve(analyser.postprocessing, factor)
    um2 = mpp * mpp
    phases = {"read": 0.0, "model": 0.0, "post": 0.0}
    n_tiles, nuclei = 0, 0
    with open(a.out, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ObjectNumber", "AreaShape_Area", "AreaShape_Area_um2", "AreaShape_Perimeter",
                      "AreaShape_Eccentricity", "AreaShape_Solidity", "AreaShape_Center_X", "AreaShape_Center_Y",
                      "Intensity_MeanIntensity_Red", "Intensity_MeanIntensity_Green", "Intensity_MeanIntensity_Blue"])
        for (cx0, cy0, cx1, cy1), (rx0, ry0, rx1, ry1) in tiles(region, a.tile, a.overlap):
            mx0, my0 = int(rx0 / ds), int(ry0 / ds)
            mx1, my1 = int(math.ceil(rx1 / ds)), int(math.ceil(ry1 / ds))
            if not mask[my0:my1, mx0:mx1].any():
                continue
            n_tiles += 1
            t0 = time.perf_counter()
            rgb = np.asarray(slide.read_region((rx0, ry0), 0, (rx1 - rx0, ry1 - ry0)))[..., :3]
            grey = ref.to_grey(rgb)
            t1 = time.perf_counter()
            oh, ow = grey.shape
            scaled = ref.resize_grey(grey, max(1, round(ow * factor)), max(1, round(oh * factor)))
            x = torch.from_numpy(lut[scaled].astype(np.float32) / 255.0)
            if invert:
                x = 1.0 - x
            with torch.inference_mode():
                p = torch.sigmoid(analyser.model(x[None, None]))
                p = F.interpolate(p, size=(oh, ow), mode="bilinear", align_corners=False)
            fg = p[0, 0].numpy()
            t2 = time.perf_counter()
            labels, n = ref.instances(fg, thr, h_px, hole_px, min_area_px)
            if n:
                props = regionprops_table(labels, intensity_image=rgb.astype(np.float32) / 255.0,
                                          properties=("label", "area", "perimeter", "eccentricity", "solidity",
                                                      "centroid", "intensity_mean"))
                for i in range(len(props["label"])):
                    cy, cx = props["centroid-0"][i] + ry0, props["centroid-1"][i] + rx0
                    area = float(props["area"][i])
                    if not (cx0 <= cx < cx1 and cy0 <= cy < cy1) or area * um2 < t.min_area_um2:
                        continue
                    nuclei += 1
                    out.writerow([nuclei, area, area * um2, props["perimeter"][i], props["eccentricity"][i],
                                  props["solidity"][i], cx, cy, props["intensity_mean-0"][i],
                                  props["intensity_mean-1"][i], props["intensity_mean-2"][i]])
            t3 = time.perf_counter()
            phases["read"] += t1 - t0
            phases["model"] += t2 - t1
            phases["post"] += t3 - t2
    print(json.dumps({"slide": a.slide, "size": [w0, h0], "region": region, "factor": factor, "tiles": n_tiles,
                      "nuclei": nuclei, "seconds": round(time.perf_counter() - started, 2),
                      "phases_s": {k: round(v, 2) for k, v in phases.items()}, "torch_threads": analyser.threads}))


if __name__ == "__main__":
    main()
