#!/usr/bin/env python3
"""The drift statistics of bench/monitor.sh on the Python side: writes the two samples as
little-endian f64 for drift-bench to read, then times SciPy's and Evidently 0.4.40's functions on
them (best of 3) and prints one JSON line per statistic, as drift-bench does.

    /tmp/evvenv/bin/python bench/monitor_reference.py OUT_DIR N_REFERENCE N_CURRENT
"""
import json
import os
import sys
import time

import numpy as np
import pandas as pd
from scipy import stats

from evidently.calculations.stattests.hellinger_distance import _hellinger_distance
from evidently.calculations.stattests.jensenshannon import _jensenshannon
from evidently.calculations.stattests.psi import _psi
from evidently.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
from evidently.core import ColumnType

NUM = ColumnType.Numerical


def main():
    out, n_ref, n_cur = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(7)
    ref = np.round(rng.gamma(9.0, 6.0, n_ref), 6)  # nucleus areas in µm²
    cur = np.round(rng.gamma(9.0, 6.3, n_cur), 6)
    os.makedirs(out, exist_ok=True)
    ref.astype("<f8").tofile(os.path.join(out, "reference.f64"))
    cur.astype("<f8").tofile(os.path.join(out, "current.f64"))
    r, c = pd.Series(ref), pd.Series(cur)
    runs = {
        "ks_statistic": ("scipy.stats.ks_2samp", lambda: stats.ks_2samp(ref, cur).statistic),
        "wasserstein": ("scipy.stats.wasserstein_distance", lambda: stats.wasserstein_distance(ref, cur)),
        "wasserstein_normed": ("evidently", lambda: _wasserstein_distance_norm(r.copy(), c.copy(), NUM, 0.1)[0]),
        "psi": ("evidently", lambda: _psi(r.copy(), c.copy(), NUM, 0.1)[0]),
        "jensen_shannon": ("evidently", lambda: _jensenshannon(r.copy(), c.copy(), NUM, 0.1)[0]),
        "hellinger": ("evidently", lambda: _hellinger_distance(r.copy(), c.copy(), NUM, 0.1)[0]),
    }
    for name, (tool, f) in runs.items():
        best, value = float("inf"), None
        for _ in range(3):
            started = time.perf_counter()
            value = f()
            best = min(best, time.perf_counter() - started)
        print(json.dumps({"statistic": name, "tool": tool, "value": float(value), "seconds": best, "samples": n_ref + n_cur}))


if __name__ == "__main__":
    main()
