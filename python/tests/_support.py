"""Paths and helpers shared by the Python tests (run by CTest, see python/CMakeLists.txt)."""
import json
import os
import subprocess
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MEDICOSAM_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
SHARED = os.environ.get("MEDICOSAM_SHARED_DIR", os.path.normpath(os.path.join(SOURCE_DIR, "..", "shared")))
CLI = os.environ.get("MEDICOSAM_CLI", os.path.join(SOURCE_DIR, "build", "apps", "medicosam", "medicosam"))
PARITY = os.path.join(SHARED, "fixtures", "sam_parity")
TINY = os.path.join(PARITY, "sam_tiny_seed0.pth")
TINY_SAFETENSORS = os.path.join(PARITY, "extra", "sam_tiny_seed0.safetensors")


def cases():
    with open(os.path.join(PARITY, "cases.json")) as f:
        return json.load(f)


def parity_file(name):
    return np.load(os.path.join(PARITY, name))


def image_cases():
    """(image record, its uint8 HxWx3 image, its cases by name) for img0 and img1."""
    out = []
    for im in cases()["images"]:
        out.append((im, parity_file(im["image"]), {c["name"]: c for c in im["cases"]}))
    return out


def require(path):
    if not os.path.exists(path):
        raise unittest.SkipTest("missing " + path)
    return path


_precision_args = None


def cli_fp32():
    """CLI arguments for the reference (fp32) encoder: `--precision fp32` where the CLI has that option
    (its default may be bfloat16 on CPUs that have it), nothing where fp32 is all it does."""
    global _precision_args
    if _precision_args is None:
        require(CLI)
        p = subprocess.run([CLI, "segment", "--help"], capture_output=True, text=True)
        _precision_args = ["--precision", "fp32"] if "--precision" in p.stdout else []
    return _precision_args


def run_cli(*args):
    """Runs the medicosam CLI; returns its stdout (fails the test with stderr on error)."""
    require(CLI)
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True,
                       env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    if p.returncode != 0:
        raise AssertionError("CLI %s failed (%d): %s" % (" ".join(map(str, args)), p.returncode, p.stderr))
    return p.stdout


def cli_error(*args):
    """Runs the CLI expecting failure; returns its one-line stderr message."""
    require(CLI)
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    if p.returncode == 0:
        raise AssertionError("CLI %s unexpectedly succeeded" % " ".join(map(str, args)))
    return p.stderr.strip()


def write_png(path, image):
    from PIL import Image
    Image.fromarray(image).save(path)


def read_png(path):
    from PIL import Image
    return np.asarray(Image.open(path))
