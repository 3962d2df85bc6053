#!/usr/bin/env python3
"""Python reference service for `cellops serve`'s measure endpoint: a benchmark baseline, not a product.

Does the same per-image work as `POST /v2/models/nuclei/measure?params=<type>&name=<n>` of the Rust
service (crates/stages/serve/src/app/measure.rs → crates/libs/analysis → crates/libs/unet/src/inference.rs
→ crates/libs/measure/src/instances.rs), with PyTorch (CPU), SciPy and scikit-image:

  decode (Pillow / tifffile) → alpha dropped → grey (OpenCV's RGB2GRAY fixed point, as
  cellops_dataset::ops::colour::grey) → [resize to the nucleus scale] → percentile normalisation to
  8 bits (bundle.json `preprocessing.normalize`, 1.0 / 99.8) → polarity `auto` (nuclei bright on dark)
  → /255 → U-Net (reflect-padded to a multiple of 2^depth, cropped back) → sigmoid → probabilities
  resized back to the image (bilinear) → foreground > threshold → holes filled → Euclidean distance
  transform → h-maxima markers → watershed → small objects removed → regionprops → filters, size
  classes → JSON {summary, objects}.

Nucleus scale: as the Rust `Predictor::estimate_scale`, the model first runs at the image's own
size; the median equivalent diameter of the nuclei it finds (default distance watershed,
threshold 0.5, h 0.75 px; specks under target/(4·factor) ignored) gives the next factor,
factor·(target/(diameter·factor))^(1/0.7) (clamped to 0.25..4), and the model runs again until it
settles within 15 % (at most 3 more passes); then one pass at half the factor, and if the nuclei
there are at least 0.8 of their size at the factor (model pixels), the estimate restarts from it. The image is resized with Pillow's BILINEAR (antialiased when shrinking, as the Rust
`Filter::Bilinear`). `--no-scale` runs once at the image's own size.

Post-processing values: the bundle's tuned ones (bundle.json `postprocessing`: threshold 0.75, h 1 px,
min area 48 px, holes 256 px, sizes at the model's scale, divided by the factor as
`Segmentation::resolve` does) unless the cell-params file sets them.

Deliberate simplifications (the cost is the same order, the numbers can differ slightly):
  * the whole (scaled) image goes through the network in one pass; the Rust predictor cuts images
    larger than 256 px into 256 px tiles with 32 px overlap (4 tiles a batch) and blends them;
  * objects under the minimum area after the watershed are removed (Rust merges each into the
    neighbour it shares the longest border with, removing it only when it touches none);
  * skimage's regionprops perimeter / solidity / eccentricity, not cellops-measure's own code;
    fewer columns (area, perimeter, form factor, eccentricity, solidity, centre, mean intensity
    per channel, size class, border flag) than the Rust table.

Usage:
  /tmp/servevenv/bin/python bench/serve_reference.py --bundle models/nuclei \
      --params cell-params/fluorescence-dapi.yaml --port 9000 --workers 1
  curl -H 'Content-Type: image/png' --data-binary @IMAGE.png \
      'http://127.0.0.1:9000/v2/models/nuclei/measure?params=fluorescence-dapi&name=x'

Environment: TORCH_THREADS (torch intra-op threads per worker process; default all cores).
Concurrency: requests run in Starlette's thread pool (40 threads by default), so several images
are analysed at once within one process; `--workers N` starts N processes (each with TORCH_THREADS).
Install: see bench/serve_reference_requirements.txt.
"""

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

# Configuration travels by environment so that uvicorn's worker processes (which re-import this
# module) see it too.
ENV_BUNDLE = "CELLOPS_REF_BUNDLE"
ENV_PARAMS = "CELLOPS_REF_PARAMS"  # os.pathsep-separated parameter files
ENV_NO_SCALE = "CELLOPS_REF_NO_SCALE"

# As crates/libs/unet/src/inference.rs and crates/libs/dataset/src/ops/scale.rs.
SCALE_PASSES = 3
SCALE_TOLERANCE = 0.15
SPECK = 4.0
SCALE_GAIN = 0.7
FRAGMENTS = 0.8
MAX_FACTOR = 4.0
# As crates/libs/formats/src/bundle.rs.
GOLDEN_MAX_ABS_DIFF = 1e-3


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

def build_unet(in_channels, out_channels, depth, base):
    """The U-Net of crates/libs/unet/src/model.rs (BatchNorm, transposed-conv upsampling, no dropout),
    with the module names of burn's record so that model.safetensors maps onto it one to one
    (bench/unet_torch.py is the same family)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class ConvBlock(nn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
            self.norm1 = nn.BatchNorm2d(c_out, eps=1e-5)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.norm2 = nn.BatchNorm2d(c_out, eps=1e-5)

        def forward(self, x):
            x = F.relu(self.norm1(self.conv1(x)))
            return F.relu(self.norm2(self.conv2(x)))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = lambda level: base << level  # noqa: E731
            self.depth = depth
            self.encoders = nn.ModuleList(
                ConvBlock(in_channels if l == 0 else w(l - 1), w(l)) for l in range(depth)
            )
            self.pool = nn.MaxPool2d(2, 2)
            self.bottleneck = ConvBlock(w(max(depth - 1, 0)), w(depth))
            self.ups = nn.ModuleList(
                nn.ConvTranspose2d(w(l + 1), w(l), 2, stride=2, bias=True) for l in reversed(range(depth))
            )
            self.decoders = nn.ModuleList(ConvBlock(2 * w(l), w(l)) for l in reversed(range(depth)))
            self.head = nn.Conv2d(w(0), out_channels, 1, bias=True)

        def forward(self, x):
            # Reflect-pad to a multiple of 2^depth (edge-pad when too small to reflect), crop back.
            h, wd = x.shape[-2:]
            m = 1 << self.depth
            ph, pw = (m - h % m) % m, (m - wd % m) % m
            if ph or pw:
                mode = "reflect" if (ph < h and pw < wd) else "replicate"
                x = F.pad(x, (0, pw, 0, ph), mode=mode)
            skips = []
            for enc in self.encoders:
                y = enc(x)
                x = self.pool(y)
                skips.append(y)
            x = self.bottleneck(x)
            for up, dec in zip(self.ups, self.decoders):
                x = dec(torch.cat([up(x), skips.pop()], dim=1))
            return self.head(x)[..., :h, :wd]

    return UNet()


def burn_to_torch_name(name):
    """Maps a tensor name of burn's safetensors record onto the PyTorch module above:

      encoders.{i}/bottleneck/decoders.{i}.conv{1,2}.weight  -> same (Conv2d weight [out, in, 3, 3])
      ….norm{1,2}.Batch.gamma / beta                         -> ….norm{1,2}.weight / bias
      ….norm{1,2}.Batch.running_mean / running_var           -> ….norm{1,2}.running_mean / running_var
      ups.{i}.Transposed.weight / bias                        -> ups.{i}.weight / bias
                                  (ConvTranspose2d [in, out, 2, 2] in both burn and PyTorch)
      head.weight / head.bias                                 -> same
    """
    name = name.replace(".Batch.gamma", ".weight").replace(".Batch.beta", ".bias")
    name = name.replace(".Batch.", ".").replace(".Transposed.", ".")
    return name


def load_model(bundle_dir, verbose=True):
    import torch
    from safetensors.numpy import load_file

    meta = json.loads((bundle_dir / "bundle.json").read_text())
    m = meta["model"]
    if m.get("norm") != "Batch" or m.get("upsample") != "Transposed" or m.get("dropout", 0) not in (0, 0.0):
        sys.exit(f"only BatchNorm + transposed upsampling (dropout 0) bundles are supported: {m}")
    model = build_unet(m["in_channels"], m["out_channels"], m["depth"], m["base_channels"])
    tensors = load_file(str(bundle_dir / "model.safetensors"))
    if verbose:
        print(f"model.safetensors: {len(tensors)} tensors", file=sys.stderr)
        for k in sorted(tensors):
            print(f"  {k} {list(tensors[k].shape)} -> {burn_to_torch_name(k)}", file=sys.stderr)
    state = {burn_to_torch_name(k): torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    own = model.state_dict()
    expected = {k for k in own if not k.endswith("num_batches_tracked")}
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        sys.exit(f"weight names do not map: missing {sorted(missing)}, unexpected {sorted(extra)}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            sys.exit(f"{k}: shape {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model")
    model.load_state_dict(state, strict=False)  # strict=False: num_batches_tracked only
    model.eval()
    return model, meta


def golden_check(model, bundle_dir, meta):
    """The bundle's golden check (crates/libs/unet/src/golden.rs): golden.png as the model's input in
    0..1, probabilities against golden.f32. Returns (max |diff|, foreground IoU)."""
    import torch
    from PIL import Image

    g = meta.get("golden")
    if not g:
        return None
    img = np.asarray(Image.open(bundle_dir / "golden.png"))
    if img.ndim == 3:
        img = img[..., : meta["model"]["in_channels"]].transpose(2, 0, 1)
    else:
        img = img[None]
    x = torch.from_numpy(img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0))[None]
    with torch.inference_mode():
        p = torch.sigmoid(model(x))[0].numpy()
    want = np.fromfile(bundle_dir / "golden.f32", dtype="<f4").reshape(g["shape"])
    diff = float(np.abs(p - want).max())
    a, b = p[0] > 0.5, want[0] > 0.5
    union = np.logical_or(a, b).sum()
    iou = float(np.logical_and(a, b).sum() / union) if union else 1.0
    return diff, iou


# --------------------------------------------------------------------------------------------
# Image handling (crates/libs/dataset)
# --------------------------------------------------------------------------------------------

class BadImage(Exception):
    pass


def decode(body):
    """Raw bytes -> HxW or HxWxC uint8/uint16 array, alpha dropped (1 or 3 channels)."""
    from PIL import Image

    arr = None
    if body[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile

        try:
            arr = tifffile.imread(io.BytesIO(body))
        except Exception as e:  # noqa: BLE001
            raise BadImage(f"cannot decode the TIFF: {e}") from e
        arr = np.squeeze(arr)
        if arr.ndim == 3 and arr.shape[0] in (2, 3, 4) and arr.shape[-1] not in (2, 3, 4):
            arr = arr.transpose(1, 2, 0)  # planar -> interleaved
    else:
        try:
            im = Image.open(io.BytesIO(body))
            im.load()
        except Exception as e:  # noqa: BLE001
            raise BadImage(f"cannot decode the image: {e}") from e
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("L" if im.mode == "1" else "RGB")
        arr = np.asarray(im)
    if arr.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= 65535:
            arr = arr.astype(np.uint16)
        elif np.issubdtype(arr.dtype, np.floating):
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = np.round((arr - lo) / (hi - lo or 1.0) * 65535).astype(np.uint16)
        else:
            raise BadImage(f"unsupported sample type {arr.dtype}")
    if arr.ndim == 3:
        c = arr.shape[2]
        if c in (1, 2):
            arr = arr[..., 0]
        elif c >= 3:
            arr = arr[..., :3]
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadImage(f"unsupported image shape {arr.shape}")
    return np.ascontiguousarray(arr)


def to_grey(arr):
    """cellops_dataset::ops::colour::grey: (9798 R + 19235 G + 3735 B + 2^14) >> 15."""
    if arr.ndim == 2:
        return arr
    r, g, b = (arr[..., k].astype(np.uint32) for k in range(3))
    return ((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15).astype(arr.dtype)


def resize_grey(grey, width, height):
    """Pillow BILINEAR (antialiased when shrinking), as the Rust `Filter::Bilinear`."""
    from PIL import Image

    if grey.dtype == np.uint8:
        return np.asarray(Image.fromarray(grey, mode="L").resize((width, height), Image.BILINEAR))
    out = np.asarray(Image.fromarray(grey.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))
    return np.clip(np.round(out), 0, 65535).astype(np.uint16)


def percentile_u8(grey, low, high):
    """cellops_dataset::ops::normalize::percentile: [p_low, p_high] -> 0..255 (NumPy's linear
    percentile), clipped, 8-bit."""
    lo, hi = np.percentile(grey, [low, high])
    if hi <= lo:
        return np.zeros(grey.shape, np.uint8)
    scale = 255.0 / (hi - lo)
    if grey.dtype == np.uint8:
        lut = np.clip(np.round((np.arange(256) - lo) * scale), 0, 255).astype(np.uint8)
        return lut[grey]
    return np.clip(np.round((grey.astype(np.float32) - lo) * scale), 0, 255).astype(np.uint8)


def bright_background(u8):
    """cellops_dataset::ops::polarity (auto): inverts when 2·p50 > p1 + p99 (nearest-rank)."""
    n = u8.size
    cum = np.cumsum(np.bincount(u8.ravel(), minlength=256))
    pick = lambda p: int(np.searchsorted(cum, round(p / 100.0 * (n - 1)), side="right"))  # noqa: E731
    lo, med, hi = pick(1.0), pick(50.0), pick(99.0)
    return 2 * med > lo + hi


# --------------------------------------------------------------------------------------------
# Instances (crates/libs/measure/src/instances.rs)
# --------------------------------------------------------------------------------------------

EIGHT = np.ones((3, 3), bool)


def fill_holes(mask, max_hole_px):
    """Fills background components (4-connected, complementary to the objects' 8) that do not touch
    the image border and have at most `max_hole_px` pixels."""
    from scipy import ndimage as ndi

    if max_hole_px <= 0:
        return mask
    bg, n = ndi.label(~mask)  # 4-connectivity
    if n == 0:
        return mask
    sizes = np.bincount(bg.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    fill = sizes <= max_hole_px
    fill[0] = False
    fill[border] = False
    return mask | fill[bg]


def instances(prob, threshold, h_px, max_hole_px, min_area_px):
    """Foreground > threshold, holes filled, distance transform, h-maxima markers, watershed of the
    negated distances within the mask (8-connectivity), unreached foreground as its own objects,
    objects under `min_area_px` removed. Returns (labels, count)."""
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima
    from skimage.segmentation import relabel_sequential, watershed

    mask = prob > threshold
    if not mask.any():
        return np.zeros(mask.shape, np.int32), 0
    mask = fill_holes(mask, max_hole_px)
    dist = ndi.distance_transform_edt(mask)
    markers, _ = ndi.label(h_maxima(dist, h_px) > 0, structure=EIGHT)
    labels = watershed(-dist, markers, mask=mask, connectivity=2)
    rest = mask & (labels == 0)
    if rest.any():
        extra, _ = ndi.label(rest, structure=EIGHT)
        labels = np.where(extra > 0, extra + labels.max(), labels)
    if min_area_px > 1:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_area_px
        small[0] = False
        if small.any():
            labels[small[labels]] = 0
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.int32), int(labels.max())


def median_diameter_above(labels, min_diameter):
    """cellops_dataset::ops::scale::median_diameter_above."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[(areas > 0) & (areas >= math.pi * min_diameter * min_diameter / 4.0)]
    if areas.size == 0:
        return None
    return math.sqrt(4.0 * float(np.median(areas)) / math.pi)


# --------------------------------------------------------------------------------------------
# The analyser
# --------------------------------------------------------------------------------------------

class ImageType:
    def __init__(self, path):
        import yaml

        self.name = Path(path).stem
        self.raw = yaml.safe_load(Path(path).read_text()) or {}
        self.pixel_size_um = float(self.raw.get("pixel_size_um", 1.0))
        seg = self.raw.get("segmentation") or {}
        sep = seg.get("separation") or {}
        self.method = sep.get("method", "watershed")
        if self.method not in ("watershed", "boundary", "none"):
            sys.exit(f"{path}: separation method {self.method} is not supported here")
        # `boundary` without a boundary cut falls back to the watershed in this reference.
        self.probability_threshold = seg.get("probability_threshold")
        self.h_px = sep.get("h_px")
        self.min_area_px = seg.get("min_area_px")
        self.fill_holes_um2 = seg.get("fill_holes_max_area_um2")
        if seg.get("connectivity", 8) != 8:
            print(f"{path}: connectivity {seg.get('connectivity')} ignored (8 used)", file=sys.stderr)
        filters = self.raw.get("filters") or {}
        self.min_area_um2 = float(filters.get("min_area_um2", 0.0))
        self.max_area_um2 = filters.get("max_area_um2")
        ff = filters.get("form_factor") or {}
        self.ff_min, self.ff_max = ff.get("min"), ff.get("max")
        self.exclude_border = bool(filters.get("exclude_border", False))
        classes = self.raw.get("classes") or {}
        self.size_classes = classes.get("size") or []
        self.image_classes = classes.get("image") or []

    def resolve(self, bundle_pp, scale):
        """Segmentation::resolve: the file's value, else the bundle's (sizes / scale), else default."""
        d = {"probability_threshold": 0.5, "h_px": 0.75, "min_area_px": 0.0, "fill_holes_px": 0.0}
        s = scale if scale > 0 and math.isfinite(scale) else 1.0
        b = bundle_pp or {}

        def pick(file_v, tuned, default):
            return file_v if file_v is not None else (tuned if tuned is not None else default)

        t = pick(self.probability_threshold, b.get("probability_threshold"), d["probability_threshold"])
        h = pick(self.h_px, None if "h_px" not in b else b["h_px"] / s, d["h_px"])
        a = pick(self.min_area_px, None if "min_area_px" not in b else b["min_area_px"] / (s * s), d["min_area_px"])
        holes_file = None if self.fill_holes_um2 is None else self.fill_holes_um2 / self.pixel_size_um**2
        f = pick(holes_file, None if "fill_holes_px" not in b else b["fill_holes_px"] / (s * s), d["fill_holes_px"])
        return float(t), float(h), int(math.floor(f)), int(round(a))

    def size_class(self, area_um2):
        for c in self.size_classes:
            if "max_area_um2" not in c or area_um2 <= float(c["max_area_um2"]):
                return c["name"]
        return ""


class Analyser:
    def __init__(self, bundle_dir, param_files, estimate_scale=True):
        import torch

        threads = int(os.environ.get("TORCH_THREADS", "0") or 0) or (os.cpu_count() or 1)
        torch.set_num_threads(threads)
        self.threads = threads
        self.bundle_dir = Path(bundle_dir)
        self.model, self.meta = load_model(self.bundle_dir, verbose=os.environ.get("CELLOPS_REF_QUIET") != "1")
        pre = self.meta.get("preprocessing") or {}
        if pre.get("colour", "grey") != "grey" or self.meta["model"]["in_channels"] != 1:
            sys.exit("only grey, one-input-channel bundles are supported")
        norm = pre.get("normalize") or {}
        self.norm_low = float(norm.get("low", 1.0)) if norm.get("method") == "percentile" else None
        self.norm_high = float(norm.get("high", 99.8))
        self.polarity = pre.get("polarity", "auto")
        eq = (pre.get("equalize") or {}).get("method", "none")
        if eq != "none":
            sys.exit(f"equalize {eq} is not supported here")
        scale = pre.get("scale")
        self.target_diameter = float(scale["diameter_px"]) if (scale and estimate_scale) else None
        self.postprocessing = self.meta.get("postprocessing")
        self.model_name = self.bundle_dir.name
        self.model_version = self.meta.get("id", "")
        self.types = {}
        for f in param_files:
            t = ImageType(f)
            self.types[t.name] = t
        g = golden_check(self.model, self.bundle_dir, self.meta)
        if g is not None:
            diff, iou = g
            ok = diff <= GOLDEN_MAX_ABS_DIFF and iou >= 0.99
            print(f"golden check: max |diff| {diff:.2e}, foreground IoU {iou:.4f}: {'ok' if ok else 'FAILED'}",
                  file=sys.stderr)
            if not ok:
                sys.exit("the golden check failed: the weights did not map onto the PyTorch model")

    # -- the network --------------------------------------------------------------------------

    def predict_at(self, grey, factor):
        """Probabilities [C, H, W] at the image's size and the scale (model px per image px)."""
        import torch
        import torch.nn.functional as F

        oh, ow = grey.shape
        img = grey
        if factor is not None:
            w, h = (max(1, int(round(v * factor))) for v in (ow, oh))
            if (h, w) != (oh, ow):
                img = resize_grey(grey, w, h)
        if self.norm_low is not None:
            img = percentile_u8(img, self.norm_low, self.norm_high)
        invert = self.polarity == "invert" or (self.polarity == "auto" and bright_background(img)) \
            if img.dtype == np.uint8 else self.polarity == "invert"
        x = torch.from_numpy(img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 65535.0))
        if invert:
            x = 1.0 - x
        h, w = img.shape
        with torch.inference_mode():
            p = torch.sigmoid(self.model(x[None, None]))
            if (h, w) != (oh, ow):
                p = F.interpolate(p, size=(oh, ow), mode="bilinear", align_corners=False)
        scale = 1.0 if (h, w) == (oh, ow) else math.sqrt((h * w) / (oh * ow))
        return p[0].numpy(), scale

    def _diameter(self, p, target, factor):
        """Median nucleus diameter (image pixels) of a prediction made at `factor`, or None."""
        labels, n = instances(p[0], 0.5, 0.75, 0, 0)
        d = median_diameter_above(labels, target / (SPECK * factor)) if n else None
        return d if d is not None and d > 0 else None

    def _settle(self, grey, target, p, scale, factor):
        """Refines a factor from a prediction made at it (Rust: `Predictor::settle`)."""
        model_d = None
        for _ in range(SCALE_PASSES):
            d = self._diameter(p, target, factor)
            if d is None:
                break
            model_d = d * factor
            nxt = factor * (target / model_d) ** (1.0 / SCALE_GAIN)
            nxt = min(max(nxt, 1.0 / MAX_FACTOR), MAX_FACTOR)
            if abs(math.log(nxt / factor)) < math.log1p(SCALE_TOLERANCE):
                break
            factor = nxt
            p, scale = self.predict_at(grey, factor)
        return p, scale, factor, model_d

    def predict(self, grey):
        if self.target_diameter is None:
            return self.predict_at(grey, None)
        target = self.target_diameter
        p, scale = self.predict_at(grey, 1.0)
        p, scale, factor, model_d = self._settle(grey, target, p, scale, 1.0)
        half = max(factor / 2.0, 1.0 / MAX_FACTOR)
        if model_d is None or half >= factor:
            return p, scale
        hp, hscale = self.predict_at(grey, half)
        d = self._diameter(hp, target, half)
        if d is not None and d * half >= FRAGMENTS * model_d:
            p, scale, _, _ = self._settle(grey, target, hp, hscale, half)
        return p, scale

    # -- one image ----------------------------------------------------------------------------

    def analyse(self, body, image_type, name):
        from skimage.measure import regionprops_table

        t = self.types[image_type]
        arr = decode(body)
        grey = to_grey(arr)
        height, width = grey.shape
        t0 = time.perf_counter()
        prob, scale = self.predict(grey)
        t1 = time.perf_counter()
        fg = prob[0]
        uncertain = float(np.count_nonzero((fg > 0.3) & (fg < 0.7)) / fg.size)
        thr, h_px, hole_px, min_area_px = t.resolve(self.postprocessing, scale)
        labels, n = instances(fg, thr, h_px, hole_px, min_area_px)

        um, um2 = t.pixel_size_um, t.pixel_size_um**2
        objects, dropped = [], {"small": 0, "large": 0, "form_factor": 0, "border": 0}
        if n:
            channels = ["Grey"] if arr.ndim == 2 else ["Red", "Green", "Blue"]
            scale_i = 65535.0 if arr.dtype == np.uint16 else 255.0
            intensity = arr.astype(np.float32) / scale_i
            props = regionprops_table(
                labels,
                intensity_image=intensity,
                properties=("label", "area", "perimeter", "eccentricity", "solidity", "centroid", "bbox",
                            "intensity_mean"),
            )
            for i in range(len(props["label"])):
                area = float(props["area"][i])
                perim = float(props["perimeter"][i])
                area_um2 = area * um2
                ff = 4.0 * math.pi * area / (perim * perim) if perim > 0 else float("nan")
                bbox = [int(props[f"bbox-{k}"][i]) for k in range(4)]
                touches = bbox[0] == 0 or bbox[1] == 0 or bbox[2] == height or bbox[3] == width
                if area_um2 < t.min_area_um2:
                    dropped["small"] += 1
                    continue
                if t.max_area_um2 is not None and area_um2 > float(t.max_area_um2):
                    dropped["large"] += 1
                    continue
                if (t.ff_min is not None and ff < t.ff_min) or (t.ff_max is not None and ff > t.ff_max):
                    dropped["form_factor"] += 1
                    continue
                if t.exclude_border and touches:
                    dropped["border"] += 1
                    continue
                row = {
                    "Image": name,
                    "ObjectNumber": int(props["label"][i]),
                    "AreaShape_Area": area,
                    "AreaShape_Area_um2": area_um2,
                    "AreaShape_Perimeter": perim,
                    "AreaShape_Perimeter_um": perim * um,
                    "AreaShape_FormFactor": ff,
                    "AreaShape_Eccentricity": float(props["eccentricity"][i]),
                    "AreaShape_Solidity": float(props["solidity"][i]),
                    "AreaShape_Center_X": float(props["centroid-1"][i]),
                    "AreaShape_Center_Y": float(props["centroid-0"][i]),
                }
                for k, ch in enumerate(channels):
                    key = "intensity_mean" if len(channels) == 1 else f"intensity_mean-{k}"
                    row[f"Intensity_MeanIntensity_{ch}"] = float(props[key][i])
                if t.size_classes:
                    row["Classify_Size"] = t.size_class(area_um2)
                row["TouchesBorder"] = int(touches)
                objects.append(row)

        count = len(objects)
        area_mm2 = width * height * um2 / 1e6
        density = count / area_mm2 if area_mm2 > 0 else 0.0
        features = {}
        if objects:
            for key in ("AreaShape_Area_um2", "AreaShape_Perimeter_um", "AreaShape_FormFactor",
                        "AreaShape_Eccentricity", "AreaShape_Solidity"):
                v = np.array([o[key] for o in objects], float)
                v = v[np.isfinite(v)]
                if v.size:
                    features[key] = {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
                                     "median": float(np.median(v)), "max": float(v.max())}
        size_classes = {}
        for c in t.size_classes:
            size_classes[c["name"]] = sum(1 for o in objects if o.get("Classify_Size") == c["name"])
        klass = None
        scores = {"count": float(count), "density_per_mm2": density,
                  "mean_area_um2": features.get("AreaShape_Area_um2", {}).get("mean")}
        for c in t.image_classes:
            when = c.get("when")
            if not when:
                klass = c["name"]
                break
            v = scores.get(when.get("score"))
            if v is not None and ("min" not in when or v >= when["min"]) and ("max" not in when or v <= when["max"]):
                klass = c["name"]
                break
        tags = ([klass] if klass else []) + (["empty"] if count == 0 else [])
        summary = {
            "image": name,
            "width": width,
            "height": height,
            "count": count,
            "mean_area_um2": scores["mean_area_um2"],
            "area_mm2": area_mm2,
            "density_per_mm2": density,
            "dropped": dropped,
            "features": features,
            "size_classes": size_classes,
            "class": klass,
            "tags": tags,
        }
        t2 = time.perf_counter()
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "release": "python-reference",
            "params": image_type,
            "uncertain_pixels": uncertain,
            "scale": scale,
            "timing_ms": {"model": round((t1 - t0) * 1e3, 2), "post": round((t2 - t1) * 1e3, 2)},
            "summary": summary,
            "objects": objects,
        }


# --------------------------------------------------------------------------------------------
# The HTTP app
# --------------------------------------------------------------------------------------------

def create_app():
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    state = {}

    @asynccontextmanager
    async def lifespan(_app):
        bundle = os.environ.get(ENV_BUNDLE, "models/nuclei")
        params = [p for p in os.environ.get(ENV_PARAMS, "").split(os.pathsep) if p]
        analyser = Analyser(bundle, params, estimate_scale=os.environ.get(ENV_NO_SCALE) != "1")
        print(f"ready: model {analyser.model_name} ({analyser.model_version}), image types "
              f"{sorted(analyser.types)}, torch threads {analyser.threads}, "
              f"scale estimation {'on' if analyser.target_diameter else 'off'}", file=sys.stderr)
        state["analyser"] = analyser
        yield
        state.clear()

    app = FastAPI(title="cellops measure reference (Python)", lifespan=lifespan)

    def err(status, message):
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": "analyser" in state}

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.post("/v2/models/{model}/measure")
    async def measure(model: str, request: Request, params: str | None = None, name: str | None = None):
        a = state.get("analyser")
        if a is None:
            return err(503, "not ready")
        if model != a.model_name:
            return err(404, f"no model `{model}`")
        types = ", ".join(sorted(a.types))
        if params is None:
            return err(400, f"say which image type with ?params=<type> (one of: {types})")
        if params not in a.types:
            return err(404, f"no image type `{params}` for model `{model}` (one of: {types})")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and not (kind.startswith("image/") or kind == "application/octet-stream"):
            return err(415, f"Content-Type {kind} is not an image")
        body = await request.body()
        if not body:
            return err(400, "the body is empty: send the image's bytes")
        try:
            out = await run_in_threadpool(a.analyse, body, params, name or "upload")
        except BadImage as e:
            return err(400, str(e))
        return JSONResponse(out)

    return app


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="models/nuclei", help="model bundle directory")
    ap.add_argument("--params", action="append", required=True,
                    help="cell-params YAML (repeatable); the image type is the file stem")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--no-scale", action="store_true",
                    help="run the model at the image's own size (no nucleus-scale estimation)")
    ap.add_argument("--log-level", default="warning")
    a = ap.parse_args(argv)

    os.environ[ENV_BUNDLE] = str(Path(a.bundle).resolve())
    os.environ[ENV_PARAMS] = os.pathsep.join(str(Path(p).resolve()) for p in a.params)
    if a.no_scale:
        os.environ[ENV_NO_SCALE] = "1"

    import uvicorn

    uvicorn.run(
        "serve_reference:app",
        app_dir=str(Path(__file__).resolve().parent),
        host=a.host,
        port=a.port,
        workers=a.workers,
        log_level=a.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
else:
    # Imported by uvicorn (each worker process).
    app = create_app()
