#!/usr/bin/env python3
"""Reference thresholds for crates/libs/measure/tests/threshold_reference.rs (scikit-image).

Usage: python3 bench/threshold_reference.py  (prints the CASES rows)
"""
import numpy as np
from skimage.filters import threshold_otsu, threshold_li, threshold_triangle
rng = np.random.default_rng(7)
cases = []
for k in range(5):
    n = 300
    a = np.clip(rng.normal(30+10*k, 12, n*2), 0, 255)
    b = np.clip(rng.normal(150+15*k, 25, n//(k+1)), 0, 255)
    img = np.concatenate([a, b]).astype(np.uint8)
    vals = np.bincount(img, minlength=256)
    nz = [(int(i), int(c)) for i, c in enumerate(vals) if c]
    cases.append((nz, float(threshold_otsu(img)), float(threshold_li(img)), float(threshold_triangle(img))))
for nz, o, l, t in cases:
    print("(&%s, %r, %r, %r)," % (str(nz).replace('(', '(').replace(' ', ''), o, l, t))
