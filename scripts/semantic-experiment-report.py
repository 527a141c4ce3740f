#!/usr/bin/env python3
"""Summarises scripts/semantic-experiment.sh's output folder into one Markdown table.

usage: scripts/semantic-experiment-report.py [DIR]   (default models/evaluation/semantic)
Reads DIR/<dataset>/summary.json (test split), DIR/<dataset>_<model>_validation.csv (best val metric)
and DIR/wall_time.txt; writes DIR/results.md and prints it.
"""
import csv
import json
import math
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "models", "evaluation", "semantic")
times = {}
header = ""
for line in open(os.path.join(root, "wall_time.txt")):
    if line.startswith("#"):
        header = line[1:].strip()
        continue
    parts = line.split()
    if parts[0] == "train":
        times[(parts[1], parts[2])] = int(parts[3])
    elif parts[0] == "test-eval":
        times[(parts[1], "test-eval")] = int(parts[2])


def fmt(v, d=3):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


out = [f"Run: {header}", ""]
for ds in sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "summary.json"))):
    s = json.load(open(os.path.join(root, ds, "summary.json")))
    out += [f"### {ds} (test split, {s['results'][0]['images']} images)", "",
            "| model | best val metric (step) | test mean Dice | Dice per class | NSD per class | HD95 per class (px) | train s |",
            "|---|---|---|---|---|---|---|"]
    for r in s["results"]:
        name = r["method"]
        val = os.path.join(root, f"{ds}_{name}_validation.csv")
        best = "-"
        if os.path.exists(val):
            rows = list(csv.DictReader(open(val)))
            b = min(rows, key=lambda x: float(x["metric"]))
            best = f"{float(b['metric']):.3f} ({b['iteration']})"
        per = lambda k, d=3: " / ".join(fmt(c[k], d) for c in r["classes"])
        out.append(f"| {name} | {best} | {fmt(r['mean_dice'])} | {per('dice')} | {per('nsd')} | {per('hd95', 1)} | "
                   f"{times.get((ds, name), '-')} |")
    out += ["", f"test evaluation of the four models: {times.get((ds, 'test-eval'), '-')} s", ""]
text = "\n".join(out) + "\n"
open(os.path.join(root, "results.md"), "w").write(text)
print(text)
