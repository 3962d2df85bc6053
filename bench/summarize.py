#!/usr/bin/env python3
"""Turns the results bench/run.sh wrote (RESULTS folder) into the Markdown tables of
docs/benchmarks.md. Ratios are python_time / rust_time: above 1 means cellops is faster."""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def lines(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip().startswith("{")]


def main():
    res = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cellops-bench")

    # ---- build ----
    rows = defaultdict(list)
    for r in lines(res / "build.jsonl"):
        if r["rc"] != 0:
            sys.exit(f"a run failed: {r}")
        rows[r["label"]].append(r)
    med = {k: (statistics.median(x["wall_s"] for x in v), statistics.median(x["max_rss_kib"] for x in v) / 1024, len(v))
           for k, v in rows.items()}
    pairs = [  # (python row, cellops row it is compared with)
        ("python build, Pool(2)", "cellops build, 2 threads"),
        ("python build, --jobs 1", "cellops build, 1 thread"),
        ("python build, Pool(2)", "cellops build, incremental no-op rerun"),
    ]
    print("### build (574 images, resize 256x256, CLAHE)\n")
    print("| row | runs | wall s (median) | peak RSS MiB (median, `time -v`) | ratio python/cellops (wall) |")
    print("|---|---:|---:|---:|---:|")
    done = set()
    for py, rs in pairs:
        for k in (rs, py):
            if k in med and k not in done:
                w, m, n = med[k]
                ratio = ""
                if k == rs and py in med:
                    ratio = f"{med[py][0] / w:.2f} (vs {py.removeprefix('python build, ')})"
                print(f"| {k} | {n} | {w:.2f} | {m:.1f} | {ratio} |")
                done.add(k)
    print("\nAll runs (wall s): " + "; ".join(
        f"{k}: " + ", ".join(f"{x['wall_s']:.2f}" for x in v) for k, v in rows.items() if not k.startswith("mem:")))
    print("\n1-minute load average before each run: " + ", ".join(
        f"{x['load1_before']:.2f}" for v in rows.values() for x in v))
    mem = {k: v[0] for k, v in rows.items() if k.startswith("mem:")}
    if mem:
        print("\n| process tree, sampled every 20 ms | peak RSS sum MiB | peak PSS sum MiB | largest process MiB (`time -v`) |")
        print("|---|---:|---:|---:|")
        for k, x in mem.items():
            print(f"| {k.removeprefix('mem: ')} | {x['tree_rss_peak_kib'] / 1024:.1f} | {x['tree_pss_peak_kib'] / 1024:.1f} | {x['max_rss_kib'] / 1024:.1f} |")

    # ---- equalize ----
    eq = defaultdict(list)
    mp = None
    for r in lines(res / "equalize.jsonl"):
        eq[(r["tool"], r["threads"])].append(r)
        mp = r["megapixels"]
    print(f"\n### equalizeHist / CLAHE (574 grey planes, {mp:.1f} MP; ms = best of 5 reps, median over rounds)\n")
    print("| op | threads | cellops ms | cellops MP/s | OpenCV ms (setNumThreads) | OpenCV MP/s | ratio | "
          "OpenCV ms (images on a thread pool) | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    m = lambda tool, t, op: statistics.median(x[f"{op}_ms"] for x in eq[(tool, t)]) if eq.get((tool, t)) else None
    for op in ("equalize", "clahe"):
        for t in sorted({t for _, t in eq}):
            c, o, p = m("cellops", t, op), m("opencv", t, op), m("opencv-image-threads", t, op)
            name = "equalizeHist" if op == "equalize" else "CLAHE 2.0, 8x8"
            extra = f"{p:.1f} | {p / c:.2f}" if p else "– | –"
            print(f"| {name} | {t} | {c:.1f} | {mp / c * 1e3:.0f} | {o:.1f} | {mp / o * 1e3:.0f} | {o / c:.2f} | {extra} |")
    print("\nAll rounds (ms, equalize/clahe): " + "; ".join(
        f"{tool} t{t}: " + ", ".join(f"{x['equalize_ms']:.0f}/{x['clahe_ms']:.0f}" for x in v) for (tool, t), v in sorted(eq.items())))

    # ---- agreement ----
    cmp_ = lines(res / "compare.json")[0]["compare"]
    print("\n### agreement with OpenCV (same grey planes)\n")
    print("| op | max abs diff | differing pixels | fraction | images differing |")
    print("|---|---:|---:|---:|---:|")
    for op, s in cmp_.items():
        print(f"| {op} | {s['max_abs_diff']} | {s['differing_pixels']} | {s['fraction_differing']:.4%} | {s['images_differing']} / 574 |")


if __name__ == "__main__":
    main()
