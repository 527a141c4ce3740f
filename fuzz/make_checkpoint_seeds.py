#!/usr/bin/python3
"""Writes the seed corpora of the checkpoint fuzzers (run once; the outputs are
committed): small torch.save archives of the layouts medicosam reads, their
data.pkl pickles plus plain pickles of every protocol, safetensors files and
.npy files. Needs Debian's python3-torch and python3-numpy (a test tool only).

    fuzz/make_checkpoint_seeds.py
"""
import collections
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def out(folder, name, data):
    path = os.path.join(HERE, "corpus", folder, name)
    with open(path, "wb") as f:
        f.write(data)


def saved(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


torch.manual_seed(0)
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
objects = {
    "state_dict": collections.OrderedDict(
        [("image_encoder.w", torch.randn(2, 3)), ("mask_decoder.b", torch.zeros(3, dtype=torch.float16))]),
    "views": collections.OrderedDict(
        [("a", base), ("b", base[1:, ::2]), ("c", base.t()), ("d", base[2])]),
    "trainer": {
        "model_state": collections.OrderedDict([("sam.prompt_encoder.x", torch.ones(2, dtype=torch.bfloat16))]),
        "optimizer_state": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                            "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "params": [0]}]},
        "iteration": 12, "epoch": 3, "best_metric": 0.25, "config": json.dumps({"lr": 1e-5}),
        "flag": True, "none": None, "blob": b"\x00\xffbytes",
    },
    "dtypes": [torch.tensor([1, 2], dtype=d) for d in
               (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.float64)],
    "parameter": {"p": torch.nn.Parameter(torch.ones(2, 2)), "shared": [base, base]},
}
for name, obj in objects.items():
    archive = saved(obj)
    out("checkpoint_zip_fuzzer", name + ".pth", archive)
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        out("checkpoint_pickle_fuzzer", name + "_data.pkl", z.read(pkl))

# A re-zipped (DEFLATED) archive.
src = zipfile.ZipFile(io.BytesIO(saved(objects["views"])))
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for n in src.namelist():
        z.writestr(n, src.read(n))
out("checkpoint_zip_fuzzer", "deflated.pth", buf.getvalue())

plain = {"a": [1, -5, 2 ** 40, None, True, "x", 0.25, b"by"], "b": (1, 2), 3: {"n": []}}
for proto in range(0, 6):
    out("checkpoint_pickle_fuzzer", "plain_p%d.pkl" % proto, pickle.dumps(plain, protocol=proto))
od = collections.OrderedDict([("k", 1), ("l", [1.5, "s"])])
out("checkpoint_pickle_fuzzer", "ordered_p2.pkl", pickle.dumps(od, protocol=2))
out("checkpoint_pickle_fuzzer", "ordered_p4.pkl", pickle.dumps(od, protocol=4))


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (code, shape, raw) in tensors.items():
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    js = json.dumps(header).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    return struct.pack("<Q", len(js)) + js + data


out("safetensors_fuzzer", "two.safetensors", safetensors(
    {"w": ("F32", [2, 2], np.arange(4, dtype="<f4").tobytes()),
     "b": ("F16", [3], np.ones(3, dtype="<f2").tobytes())}, {"format": "pt"}))
out("safetensors_fuzzer", "dtypes.safetensors", safetensors(
    {"i": ("I64", [1], b"\x01" * 8), "u": ("U8", [2], b"\x01\x02"), "z": ("BF16", [0], b""),
     "s": ("BOOL", [], b"\x01"), "d": ("F64", [1, 1], b"\x00" * 8)}))

for name, arr in {
    "f32_2d": np.arange(6, dtype="<f4").reshape(2, 3),
    "f16_1d": np.ones(4, dtype="<f2"),
    "u8_3d": np.zeros((2, 2, 2), dtype="u1"),
    "bool_scalar": np.array(True),
    "i64_empty": np.zeros((0, 3), dtype="<i8"),
    "f64": np.array([0.5, -1.0]),
}.items():
    buf = io.BytesIO()
    np.save(buf, arr)
    out("npy_fuzzer", name + ".npy", buf.getvalue())
buf = io.BytesIO()
np.lib.format.write_array(buf, np.arange(3, dtype="<i4"), version=(2, 0))
out("npy_fuzzer", "v2_i32.npy", buf.getvalue())
