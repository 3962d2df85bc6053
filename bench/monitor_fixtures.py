#!/usr/bin/env python3
"""Writes crates/libs/drift/tests/data/reference_values.json: pairs of samples and what SciPy and
Evidently say about them, for cellops-drift's tests (values to 1e-9).

    python3 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install evidently==0.4.40 scipy
    /tmp/evvenv/bin/python bench/monitor_fixtures.py

SciPy: ks_2samp (statistic, p-value), wasserstein_distance, special.kolmogorov. Evidently 0.4.40's
own stattest functions: PSI, Jensen-Shannon, Hellinger, normed Wasserstein, KS (its p-value).
Samples come from a seeded generator: sizes from 3 to 10,001, equal and unequal, continuous and
integer-valued (few distinct values: Evidently bins those by value), shifted, scaled, with ties.
"""
import json
import os
import sys

import numpy as np
import pandas as pd
import scipy
from scipy import special, stats

import evidently
from evidently.calculations.stattests.hellinger_distance import _hellinger_distance
from evidently.calculations.stattests.jensenshannon import _jensenshannon
from evidently.calculations.stattests.ks_stattest import _ks_stat_test
from evidently.calculations.stattests.psi import _psi
from evidently.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
from evidently.core import ColumnType

NUM = ColumnType.Numerical


def samples(rng):
    """(name, reference, current) cases."""
    yield "tiny_equal", rng.normal(0, 1, 3), rng.normal(0.5, 1, 3)
    yield "small_unequal", rng.normal(0, 1, 17), rng.normal(0.3, 1.2, 29)
    yield "equal_60", rng.normal(10, 2, 60), rng.normal(10, 2, 60)
    yield "shifted_200_150", rng.normal(0, 1, 200), rng.normal(0.4, 1, 150)
    yield "scaled_500_80", rng.lognormal(3, 0.5, 500), rng.lognormal(3, 0.9, 80)
    yield "same_1000_997", rng.normal(5, 1, 1000), rng.normal(5, 1, 997)
    yield "ties_rounded", np.round(rng.normal(50, 10, 300), 0), np.round(rng.normal(52, 10, 240), 0)
    yield "counts_few_distinct", rng.poisson(4, 400).astype(float), rng.poisson(5, 90).astype(float)
    yield "counts_empty_bins", rng.integers(0, 6, 100).astype(float), rng.integers(3, 9, 50).astype(float)
    yield "uniform_vs_beta", rng.uniform(0, 1, 700), rng.beta(2, 5, 640)
    yield "areas_um2", rng.gamma(9, 6, 2500), rng.gamma(9, 6.6, 400)
    yield "large_asymptotic", rng.normal(0, 1, 10001), rng.normal(0.05, 1, 300)


def case(name, ref, cur):
    # Six decimals keep the file small; the statistics are computed on exactly these values.
    ref, cur = np.round(ref, 6), np.round(cur, 6)
    r, c = pd.Series(ref), pd.Series(cur)
    ks = stats.ks_2samp(ref, cur)
    n1, n2 = len(ref), len(cur)
    en = max(n1, n2) * min(n1, n2) / (n1 + n2)
    return {
        "name": name,
        "reference": [float(v) for v in ref],
        "current": [float(v) for v in cur],
        "ks_statistic": float(ks.statistic),
        "ks_p_value": float(ks.pvalue),
        "ks_exact": bool(max(n1, n2) <= 10000),
        "kolmogorov_sf": float(special.kolmogorov(np.sqrt(en) * ks.statistic)),
        "evidently_ks_p_value": float(_ks_stat_test(r, c, NUM, 0.05)[0]),
        "wasserstein": float(stats.wasserstein_distance(ref, cur)),
        "wasserstein_normed": float(_wasserstein_distance_norm(r.copy(), c.copy(), NUM, 0.1)[0]),
        "psi": float(_psi(r.copy(), c.copy(), NUM, 0.1)[0]),
        "jensen_shannon": float(_jensenshannon(r.copy(), c.copy(), NUM, 0.1)[0]),
        "hellinger": float(_hellinger_distance(r.copy(), c.copy(), NUM, 0.1)[0]),
    }


def main():
    rng = np.random.default_rng(20261207)
    out = {
        "generated_by": "bench/monitor_fixtures.py",
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "evidently": evidently.__version__},
        "cases": [case(*s) for s in samples(rng)],
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "crates/libs/drift/tests/data/reference_values.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(out['cases'])} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
