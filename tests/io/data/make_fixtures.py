#!/usr/bin/python3
"""Generates the small 2D fixtures in this folder and the RGB8 images that
micro_sam's (pre-b2465dac) `_to_image` rule produces for them (*.expected.npy).
Run with Debian's /usr/bin/python3 (numpy + PIL). Deterministic."""
import struct
import zlib

import numpy as np
from PIL import Image

rng = np.random.default_rng(1234)


def micro_sam_to_image(x):
    # micro_sam util._to_image at MedicoSAM experiment time: non-uint8 ->
    # global min-max to uint8 (float32, truncating cast); 2D -> 3 channels.
    if x.dtype != np.uint8:
        x = x.astype("float32") - x.min()
        x = x / x.max()
        x = (x * 255).astype("uint8")
    if x.ndim == 2:
        x = np.stack([x] * 3, axis=-1)
    return x


def write_png(path, arr, color_type):
    """Minimal PNG writer for 16-bit data (PIL cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


H, W = 7, 13
gray16 = rng.integers(1000, 40000, size=(H, W), dtype=np.uint16)
write_png("gray16.png", gray16, 0)
np.save("gray16.png.expected.npy", micro_sam_to_image(gray16))

rgb16 = rng.integers(0, 65535, size=(H, W, 3), dtype=np.uint16)
write_png("rgb16.png", rgb16, 2)
np.save("rgb16.png.expected.npy", micro_sam_to_image(rgb16))

Image.fromarray(gray16).save("gray16.tif")
np.save("gray16.tif.expected.npy", micro_sam_to_image(gray16))

gray8 = rng.integers(0, 255, size=(H, W), dtype=np.uint8)
rgb8 = rng.integers(0, 255, size=(H, W, 3), dtype=np.uint8)
Image.fromarray(rgb8).save("rgb8.tif")
np.save("rgb8.tif.expected.npy", micro_sam_to_image(rgb8))
Image.fromarray(gray8).save("gray8.bmp")
np.save("gray8.bmp.expected.npy", micro_sam_to_image(gray8))
Image.fromarray(rgb8).save("rgb8.bmp")
np.save("rgb8.bmp.expected.npy", micro_sam_to_image(rgb8))

f32 = (rng.standard_normal((H, W)) * 100.0).astype(np.float32)
Image.fromarray(f32, mode="F").save("float32.tif")
np.save("float32.tif.expected.npy", micro_sam_to_image(f32))

pal = Image.fromarray(rgb8).convert("P", palette=Image.ADAPTIVE, colors=8)
pal.save("palette.png")
np.save("palette.png.expected.npy", micro_sam_to_image(np.asarray(pal.convert("RGB"))))

la = np.stack([gray8, rng.integers(0, 255, size=(H, W), dtype=np.uint8)], axis=-1)
Image.fromarray(la, mode="LA").save("gray_alpha.png")
np.save("gray_alpha.png.expected.npy", micro_sam_to_image(gray8))

rgba = np.concatenate([rgb8, rng.integers(0, 255, size=(H, W, 1), dtype=np.uint8)], axis=-1)
Image.fromarray(rgba, mode="RGBA").save("rgba.png")
np.save("rgba.png.expected.npy", micro_sam_to_image(rgb8))

Image.fromarray(gray8).save("gray8.png")
np.save("gray8.png.expected.npy", micro_sam_to_image(gray8))
