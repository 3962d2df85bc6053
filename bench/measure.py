#!/usr/bin/env python3
"""Runs a command under `/usr/bin/time -v` and also samples its whole process tree's memory.

`/usr/bin/time -v` reports "Maximum resident set size" from getrusage(RUSAGE_CHILDREN): the peak of
the single largest process, not the sum over a multiprocessing pool's workers. So this also polls
/proc every --interval seconds and records the peak over time of the tree's summed RSS and summed
PSS (PSS splits shared pages, e.g. copy-on-write pages of forked workers, between their users, so
it does not count them twice).

Prints one JSON line: label, load1_before (1-minute load average just before the run), wall_s, user_s, sys_s, max_rss_kib (time -v), tree_rss_peak_kib,
tree_pss_peak_kib, rc. The command's own output goes to stderr.

With --interval 0 nothing is sampled (the two tree_* fields are 0): use that for timing runs, since
polling /proc costs some CPU on a 2-core machine.

Usage: measure.py [--interval 0.02] -- CMD ARGS...
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(root):
    kids = children_map()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def mem_kib(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def parse_time_v(text):
    r = {}
    for line in text.splitlines():
        k, _, v = line.strip().rpartition(": ")
        if k == "Maximum resident set size (kbytes)":
            r["max_rss_kib"] = int(v)
        elif k == "User time (seconds)":
            r["user_s"] = float(v)
        elif k == "System time (seconds)":
            r["sys_s"] = float(v)
        elif k.startswith("Elapsed (wall clock) time"):
            parts = [float(x) for x in v.split(":")]
            secs = 0.0
            for x in parts:
                secs = secs * 60 + x
            r["wall_s"] = secs
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--label", default="", help="copied into the JSON line")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    load_before = os.getloadavg()[0]
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        p = subprocess.Popen(["/usr/bin/time", "-v", "-o", tf.name, *cmd], stdout=sys.stderr)
        rss_peak = pss_peak = 0
        if args.interval <= 0:  # timing run: no sampling, nothing else competing for the CPUs
            p.wait()
        while p.poll() is None:
            rss = pss = 0
            for pid in tree(p.pid)[1:]:  # skip /usr/bin/time itself
                r, s = mem_kib(pid)
                rss += r
                pss += s
            rss_peak, pss_peak = max(rss_peak, rss), max(pss_peak, pss)
            time.sleep(args.interval)
        result = parse_time_v(tf.read())
    result.update(label=args.label, load1_before=load_before, tree_rss_peak_kib=rss_peak, tree_pss_peak_kib=pss_peak, rc=p.returncode)
    print(json.dumps(result))
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
