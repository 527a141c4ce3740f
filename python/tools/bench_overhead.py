"""Per-call overhead of the Python bindings over the C++ API (docs/python.md).

    PYTHONPATH=build/python /usr/bin/python3 python/tools/bench_overhead.py [CHECKPOINT] [--repeats N]

Times SamPredictor.predict (one point, multimask) from Python and the same
C++ calls (set_embedding + predict) in a loop inside the module, on the same
model, image and thread settings, interleaved in rounds so machine load hits
both alike. Prints medians in ms and the difference.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import medicosam


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?", default=None)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--size", type=int, default=512, help="square test image side")
    a = ap.parse_args()
    sam = medicosam.load(a.checkpoint, threads=a.threads)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (a.size, a.size, 3), dtype=np.uint8)
    p = medicosam.SamPredictor(sam)
    p.set_image(image)
    xy = np.array([[a.size * 0.4, a.size * 0.6]])
    lab = np.array([1])
    for _ in range(5):  # warm up both paths
        p.predict(point_coords=xy, point_labels=lab)
        p._time_cpp_predict(xy[0, 0], xy[0, 1], True, 1)
    py_t, cpp_t = [], []
    for _ in range(a.rounds):
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            p.predict(point_coords=xy, point_labels=lab, multimask_output=True)
            py_t.append(time.perf_counter() - t0)
        cpp_t += p._time_cpp_predict(float(xy[0, 0]), float(xy[0, 1]), True, a.repeats)
    mp, mc = statistics.median(py_t) * 1e3, statistics.median(cpp_t) * 1e3
    print("model %s, image %dx%d, %d calls each" % (sam.info["architecture"], a.size, a.size, len(py_t)))
    print("python predict median %.3f ms, C++ predict median %.3f ms, overhead %.3f ms (%.1f%%)"
          % (mp, mc, mp - mc, 100 * (mp - mc) / mc))


if __name__ == "__main__":
    sys.exit(main())
