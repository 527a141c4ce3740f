#!/usr/bin/env python3
"""Test helper for tests/checkpoint: talks to Python's torch so that the C++
reader and writer are checked against the real torch.save / torch.load.

  make_checkpoints.py generate OUT_DIR
      Writes torch.save files covering the layouts and tensor kinds a SAM
      checkpoint reader meets, the expected tensor values as .npy files, and
      OUT_DIR/manifest.json: {file: [{"path": [key, ...], "npy": name,
      "dtype": torch dtype name, "shape": [...]}, ...]}. Also writes the hostile
      and damaged files for the bad-input tests.

  make_checkpoints.py verify FILE EXPECTED_DIR [--weights-only]
      torch.load(FILE) (optionally with weights_only=True) and compares every
      tensor listed in EXPECTED_DIR/manifest.json (written by the C++ test) with
      its .npy. Prints what differs; exit code 0 only if everything matches.

  make_checkpoints.py verify-safetensors FILE EXPECTED_DIR
      Parses FILE with plain json + struct (the safetensors package is not
      installed) and compares it the same way.

Only /usr/bin/python3 (Debian's torch 1.13 + numpy) is needed.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import torch


def to_numpy(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.to(torch.float32).numpy()  # exact; numpy has no bfloat16
    return t.numpy()


class Manifest:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.files = {}
        self.count = 0

    def expect(self, file_name, path, tensor):
        name = f"t{self.count:04d}.npy"
        self.count += 1
        np.save(os.path.join(self.out_dir, name), to_numpy(tensor))
        self.files.setdefault(file_name, []).append(
            {"path": list(path), "npy": name, "dtype": str(tensor.dtype).replace("torch.", ""),
             "shape": list(tensor.shape)})

    def expect_tree(self, file_name, obj, path=()):
        if isinstance(obj, torch.Tensor):
            self.expect(file_name, path, obj)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                self.expect_tree(file_name, v, path + (k,))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                self.expect_tree(file_name, v, path + (i,))

    def save(self):
        with open(os.path.join(self.out_dir, "manifest.json"), "w") as f:
            json.dump(self.files, f, indent=1)


def sam_like_state_dict(seed):
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    sd["image_encoder.pos_embed"] = torch.randn(1, 4, 4, 8, generator=g)
    sd["image_encoder.patch_embed.proj.weight"] = torch.randn(8, 3, 2, 2, generator=g)
    sd["image_encoder.patch_embed.proj.bias"] = torch.randn(8, generator=g)
    sd["prompt_encoder.point_embeddings.0.weight"] = torch.randn(1, 8, generator=g)
    sd["mask_decoder.iou_token.weight"] = torch.randn(1, 8, generator=g)
    sd["mask_decoder.mask_tokens.weight"] = torch.randn(4, 8, generator=g)
    return sd


def write_zip_copy(src, dst, compression=zipfile.ZIP_STORED, transform=None, drop=None):
    """Copies a zip archive entry by entry, optionally changing or dropping entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            if drop and drop(info.filename):
                continue
            data = zin.read(info.filename)
            if transform:
                data = transform(info.filename, data)
            zout.writestr(info.filename, data, compress_type=compression)


class Evil:
    """Pickles as a call to os.system: a loader that executes it touches MARKER."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_evil_archive(path, protocol, marker):
    payload = pickle.dumps({"weights": Evil(marker)}, protocol=protocol)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/version", b"3\n")


def generate(out):
    os.makedirs(out, exist_ok=True)
    m = Manifest(out)

    # 1. Plain OrderedDict state dict, as segment_anything's checkpoints.
    sd = sam_like_state_dict(1)
    torch.save(sd, os.path.join(out, "state_dict.pth"))
    m.expect_tree("state_dict.pth", sd)

    # 2. torch_em / micro_sam trainer checkpoint with "sam." keys and a real
    #    Adam state (tensors and ints in nested dicts, floats, tuples, None).
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    trainer = {
        "iteration": 5,
        "epoch": 2,
        "best_epoch": 1,
        "best_metric": 0.25,
        "current_metric": float("inf"),
        "model_state": collections.OrderedDict((f"sam.{k}", v) for k, v in sam_like_state_dict(2).items()),
        "optimizer_state": opt.state_dict(),
        "init": {"model_class": "micro_sam.training.trainable_sam.TrainableSAM", "model_kwargs": {}},
        "train_time": 12.5,
        "timestamp": "2024-01-01T00:00:00",
        "big_number": 2**40,
        "negative": -70000,
        "flag": True,
        "nothing": None,
        "raw": b"\x00\xffbytes",
    }
    torch.save(trainer, os.path.join(out, "trainer.pt"))
    m.expect_tree("trainer.pt", trainer)

    # 3. DDP prefix.
    ddp = collections.OrderedDict((f"module.sam.{k}", v) for k, v in sam_like_state_dict(3).items())
    torch.save({"model_state": ddp}, os.path.join(out, "ddp.pt"))
    m.expect_tree("ddp.pt", {"model_state": ddp})

    # 4. micro_sam export with a decoder.
    export = {"model_state": sam_like_state_dict(4),
              "decoder_state": collections.OrderedDict(
                  [("base.conv.weight", torch.randn(2, 2)), ("out_conv.bias", torch.randn(3))])}
    torch.save(export, os.path.join(out, "export_decoder.pth"))
    m.expect_tree("export_decoder.pth", export)

    # 5. Every supported dtype, a 0-d and an empty tensor.
    dtypes = collections.OrderedDict()
    dtypes["f32"] = torch.randn(3, 2)
    dtypes["f16"] = torch.randn(5).half()
    dtypes["bf16"] = torch.randn(2, 3).bfloat16()
    dtypes["f64"] = torch.randn(4).double()
    dtypes["i64"] = torch.tensor([-(2**40), 0, 2**40])
    dtypes["i32"] = torch.tensor([-7, 8], dtype=torch.int32)
    dtypes["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    dtypes["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    dtypes["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    dtypes["bool"] = torch.tensor([True, False, True])
    dtypes["scalar"] = torch.tensor(3.5)
    dtypes["empty"] = torch.zeros(0, 4)
    torch.save(dtypes, os.path.join(out, "dtypes.pth"))
    m.expect_tree("dtypes.pth", dtypes)

    # 6. Views into shared storages: offsets, non-contiguous strides, a
    #    transpose, an expanded (stride 0) tensor, two entries on one storage.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = collections.OrderedDict()
    views["base"] = base
    views["sliced"] = base[1:, ::2]
    views["row"] = base[2]
    views["transposed"] = base.t()
    views["expanded"] = torch.arange(3.0).reshape(3, 1).expand(3, 4)
    other = torch.arange(10, dtype=torch.int64)
    views["tail"] = other[6:]
    views["head"] = other[:3]
    torch.save(views, os.path.join(out, "views.pth"))
    m.expect_tree("views.pth", views)

    # 7. An nn.Parameter saved directly (and one inside a dict).
    param = torch.nn.Parameter(torch.randn(2, 3))
    torch.save(param, os.path.join(out, "parameter.pth"))
    m.expect("parameter.pth", (), param)

    # 8. The state dict re-zipped with DEFLATE, as a user's zip tool might.
    write_zip_copy(os.path.join(out, "state_dict.pth"), os.path.join(out, "deflated.pth"),
                   compression=zipfile.ZIP_DEFLATED)
    m.files["deflated.pth"] = m.files["state_dict.pth"]

    # 9. A {"state_dict": ...} wrapper (lightning style) with a "module." prefix.
    lightning = {"state_dict": collections.OrderedDict(
        (f"module.{k}", v) for k, v in sam_like_state_dict(5).items()), "epoch": 7}
    torch.save(lightning, os.path.join(out, "lightning.ckpt"))
    m.expect_tree("lightning.ckpt", lightning)

    # --- damaged and hostile files ---
    sd_path = os.path.join(out, "state_dict.pth")
    # A storage entry shorter than the tensor that views it.
    write_zip_copy(sd_path, os.path.join(out, "short_storage.pth"),
                   transform=lambda n, d: d[: len(d) // 2] if n.endswith("/data/0") else d)
    # A storage entry missing altogether.
    write_zip_copy(sd_path, os.path.join(out, "missing_storage.pth"),
                   drop=lambda n: n.endswith("/data/1"))
    # A zip without data.pkl.
    write_zip_copy(sd_path, os.path.join(out, "no_data_pkl.pth"),
                   drop=lambda n: n.endswith("data.pkl"))
    # Pickles that call os.system (posix.system on Linux), via GLOBAL (protocol 2)
    # and STACK_GLOBAL (protocol 4).
    marker = os.path.join(out, "PWNED_MARKER")
    write_evil_archive(os.path.join(out, "evil_global.pth"), 2, marker)
    write_evil_archive(os.path.join(out, "evil_stack_global.pth"), 4, marker)
    # The pre-1.6 format.
    torch.save(sd, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)

    m.save()


def navigate(obj, path):
    for k in path:
        obj = obj[k]
    return obj


def compare(obj, expected_dir):
    with open(os.path.join(expected_dir, "manifest.json")) as f:
        entries = json.load(f)
    bad = 0
    for e in entries:
        try:
            t = navigate(obj, e["path"])
        except (KeyError, IndexError, TypeError) as exc:
            print(f"missing {e['path']}: {exc!r}")
            bad += 1
            continue
        if isinstance(t, np.ndarray):
            got = t
        else:
            if str(t.dtype).replace("torch.", "") != e["dtype"]:
                print(f"{e['path']}: dtype {t.dtype}, expected {e['dtype']}")
                bad += 1
            got = to_numpy(t)
        want = np.load(os.path.join(expected_dir, e["npy"]))
        if list(got.shape) != e["shape"] or not np.array_equal(got, want.reshape(got.shape)):
            print(f"{e['path']}: values differ (shape {list(got.shape)} vs {e['shape']})")
            bad += 1
    scalars_path = os.path.join(expected_dir, "scalars.json")
    if os.path.exists(scalars_path):
        with open(scalars_path) as f:
            scalars = json.load(f)
        for key, want in scalars.items():
            got = obj.get(key)
            if isinstance(want, dict) and "bytes_hex" in want:
                want = bytes.fromhex(want["bytes_hex"])
            if got != want or type(got) is not type(want):
                print(f"scalar {key}: got {got!r}, expected {want!r}")
                bad += 1
    print(f"checked {len(entries)} tensors, {bad} problems; top-level type {type(obj).__name__}")
    return bad == 0


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, "header not padded to 8 bytes"
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    dtypes = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
    out = collections.OrderedDict()
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        assert b == end, f"{name}: data not contiguous ({b} != {end})"
        end = e
        buf = data[b:e]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(dtypes[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"])
    assert end == len(data), "trailing bytes after the last tensor"
    return out, header.get("__metadata__", {})


def main():
    cmd = sys.argv[1]
    if cmd == "generate":
        generate(sys.argv[2])
    elif cmd == "verify":
        path, expected = sys.argv[2], sys.argv[3]
        kwargs = {"weights_only": True} if "--weights-only" in sys.argv else {}
        obj = torch.load(path, map_location="cpu", **kwargs)
        # The archive must also be a well-formed zip for Python's zipfile.
        # and storages must be STORED and 64-byte aligned, as torch writes them.
        with zipfile.ZipFile(path) as z, open(path, "rb") as raw:
            assert z.testzip() is None
            for info in z.infolist():
                if "/data/" in info.filename:
                    assert info.compress_type == zipfile.ZIP_STORED, info.filename
                    raw.seek(info.header_offset)
                    local = raw.read(30)
                    name_len, extra_len = struct.unpack("<HH", local[26:30])
                    start = info.header_offset + 30 + name_len + extra_len
                    assert start % 64 == 0, f"{info.filename} data at {start} is not 64-byte aligned"
        sys.exit(0 if compare(obj, expected) else 1)
    elif cmd == "verify-safetensors":
        obj, meta = read_safetensors(sys.argv[2])
        ok = compare(obj, sys.argv[3])
        meta_path = os.path.join(sys.argv[3], "metadata.json")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                want = json.load(f)
            if meta != want:
                print(f"metadata {meta!r} != {want!r}")
                ok = False
        sys.exit(0 if ok else 1)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
