"""medicosam: SAM-family segmentation of medical images on libtorch, from Python.

A drop-in for segment_anything's predictor API, plus volumes, micro_sam's
embedding cache and propagation through a volume. See docs/python.md.

    import medicosam
    sam = medicosam.load("sam_vit_b.pth")          # or load() for the default model
    predictor = medicosam.SamPredictor(sam)
    predictor.set_image(image)                      # HxWx3 uint8 RGB
    masks, scores, logits = predictor.predict(point_coords=[[120, 80]], point_labels=[1])
"""

import os as _os

import numpy as _np

from . import _core
from ._core import (  # noqa: F401
    CheckpointError,
    EmbeddingCache,
    Error,
    FormatError,
    ImageEmbedding,
    InputError,
    IoError,
    Sam,
    SamAutomaticMaskGenerator,
    SamPredictor,
    Volume,
    read_volume,
)

__version__ = "0.1.0"

def default_model_path():
    """The default model: $MEDICOSAM_MODEL, else the one next to an installed or
    built medicosam (share/medicosam/models or the source tree's models/)."""
    env = _os.environ.get("MEDICOSAM_MODEL")
    if env:
        return env
    here = _os.path.dirname(_os.path.abspath(__file__))
    candidates = [
        # installed: PREFIX/lib/python3.X/dist-packages/medicosam -> PREFIX/share/medicosam/models
        _os.path.join(here, "..", "..", "..", "..", "share", "medicosam", "models",
                      "medicosam_default.safetensors"),
        # build tree: build/python/medicosam -> source tree next to build/
        _os.path.join(here, "..", "..", "..", "models", "medicosam_default.safetensors"),
    ]
    for c in candidates:
        if _os.path.exists(c):
            return _os.path.normpath(c)
    raise InputError("no model path given and no default model found (looked in "
                     + ", ".join(_os.path.normpath(c) for c in candidates)
                     + "); set MEDICOSAM_MODEL or pass a checkpoint path")


def load(path=None, device="cpu", precision="auto", threads=0):
    """Loads any checkpoint the CLI reads (SAM / MedicoSAM / MedSAM .pth, micro_sam
    exports, .safetensors); the architecture comes from the checkpoint.

    device: "cpu" or "cuda"; precision: "auto" (today: fp32); threads: 0 = all cores.
    """
    if path is None:
        path = default_model_path()
    return _core._load(_os.fspath(path), device, precision, threads)


class _RegistryEntry:
    def __init__(self, name):
        self.name = name

    def __call__(self, checkpoint=None):
        return load(checkpoint)


# segment_anything's sam_model_registry: sam_model_registry["vit_b"](checkpoint=...).
# The configuration is read from the checkpoint, so every key loads any model.
sam_model_registry = {k: _RegistryEntry(k) for k in ("default", "vit_h", "vit_l", "vit_b")}


def to_uint8(image, lower=None, upper=None):
    """Min-max scales any numeric array to uint8 as micro_sam does for non-uint8
    input (uint8 passes through): (x - min) / (max - min) * 255, truncated."""
    a = _np.asarray(image)
    if a.dtype == _np.uint8:
        return a
    a = a.astype(_np.float32)
    lo = float(a.min()) if lower is None else float(lower)
    hi = float(a.max()) if upper is None else float(upper)
    if hi <= lo:
        return _np.zeros(a.shape, _np.uint8)
    return (_np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(_np.uint8)


def precompute_image_embeddings(predictor, input_, save_path, axis="axial", normalize="minmax",
                                fp16=False, verbose=True):
    """micro_sam's precompute_image_embeddings: embeds every slice of `input_` (a
    Volume, or a (Z, Y, X) / (Y, X) array) into the zarr cache at `save_path`
    (resumed if partial) and returns the EmbeddingCache."""
    if save_path is None:
        raise InputError("save_path: medicosam keeps embeddings in a zarr folder; pass its path")
    cache = EmbeddingCache(predictor, input_, _os.fspath(save_path), axis=axis, normalize=normalize,
                           fp16=fp16)
    cache.compute(progress=verbose)
    return cache


def set_precomputed(predictor, image_embeddings, i=None):
    """micro_sam's util.set_precomputed: makes slice i of a cache current."""
    predictor.set_embedding(image_embeddings.embedding(0 if i is None else i))
    return predictor


def segment_slice(predictor, image_embeddings, i, point_coords=None, point_labels=None, box=None):
    """One object on slice i from points (x, y) and/or a box (x0, y0, x1, y1) in
    the slice's pixels, with micro_sam's choice of outputs (a single positive
    point keeps the best of 3 masks). Returns a bool (H, W) mask."""
    return image_embeddings._segment_slice(predictor, i, point_coords, point_labels, box)


def segment_mask_in_volume(segmentation, predictor, image_embeddings, segmented_slices, stop_lower,
                           stop_upper, iou_threshold, projection, update_progress=None,
                           box_extension=0.0, verbose=False):
    """micro_sam's segment_mask_in_volume: propagates the object in `segmentation`
    (Z, H, W, nonzero = object, updated in place) from `segmented_slices` through
    the volume of `image_embeddings` (an EmbeddingCache). Returns
    (segmentation, (z_min, z_max))."""
    slices = [int(z) for z in _np.asarray(segmented_slices).ravel()]
    return image_embeddings._propagate(segmentation, predictor, slices, bool(stop_lower), bool(stop_upper),
                                       float(iou_threshold), projection, update_progress,
                                       float(box_extension))


def runtime_info():
    """What decides speed in this process: the OpenBLAS kernels and thread settings."""
    return {
        "openblas_core": _core.openblas_core(),
        "OMP_WAIT_POLICY": _os.environ.get("OMP_WAIT_POLICY", ""),
        "OPENBLAS_CORETYPE": _os.environ.get("OPENBLAS_CORETYPE", ""),
    }


if hasattr(_core, "Session"):
    from ._core import Session  # noqa: F401
