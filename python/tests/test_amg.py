"""SamAutomaticMaskGenerator: the official generator's records on the AMG fixture, the CLI's label map."""
import json
import os
import tempfile
import unittest

import numpy as np

import _support as S
import medicosam

KEYS = ["segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"]


def rle_to_mask(rle):
    h, w = rle["size"]
    flat = np.zeros(h * w, np.bool_)
    pos, value = 0, False
    for n in rle["counts"]:
        flat[pos:pos + n] = value
        pos += n
        value = not value
    return flat.reshape(w, h).T  # column-major counts


class AgainstReference(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        S.require(S.TINY)
        cls.sam = medicosam.load(S.TINY, threads=2, precision="fp32")
        cls.image = S.parity_file("img0_image.npy")
        with open(os.path.join(S.PARITY, "amg_relaxed_img0.json")) as f:
            cls.ref = json.load(f)
        params = dict(cls.ref["params"])
        params.pop("output_mode")
        cls.params = params
        cls.records = medicosam.SamAutomaticMaskGenerator(cls.sam, **params).generate(cls.image)

    def test_records_match_official_generator(self):
        records = self.records
        ref_masks = S.parity_file("extra/amg_relaxed_img0_masks_NxHxW.npy")
        self.assertEqual(len(records), self.ref["num_masks"])
        self.assertEqual(len(records), len(ref_masks))
        for r in records:
            self.assertEqual(list(r.keys()), KEYS)
            self.assertEqual(r["segmentation"].dtype, np.bool_)
            self.assertEqual(r["segmentation"].shape, self.image.shape[:2])
            self.assertEqual(r["area"], int(r["segmentation"].sum()))
            self.assertEqual(r["crop_box"], [0, 0, 420, 300])
        for i, (ref_rec, ref_mask) in enumerate(zip(self.ref["masks"], ref_masks)):
            ious = [np.logical_and(r["segmentation"], ref_mask).sum() / np.logical_or(r["segmentation"], ref_mask).sum()
                    for r in records]
            j = int(np.argmax(ious))
            with self.subTest(mask=i):
                self.assertGreaterEqual(ious[j], 0.9)
                self.assertLess(abs(records[j]["predicted_iou"] - ref_rec["predicted_iou"]), 2e-3)
                self.assertLess(abs(records[j]["stability_score"] - ref_rec["stability_score"]), 5e-3)

    def test_uncompressed_rle(self):
        binary = self.records
        rle = medicosam.SamAutomaticMaskGenerator(self.sam, output_mode="uncompressed_rle",
                                                  **self.params).generate(self.image)
        self.assertEqual(len(rle), len(binary))
        for a, b in zip(rle, binary):
            self.assertEqual(a["segmentation"]["size"], [300, 420])
            np.testing.assert_array_equal(rle_to_mask(a["segmentation"]), b["segmentation"])

    def test_label_map_equals_cli(self):
        gen = medicosam.SamAutomaticMaskGenerator(self.sam, **self.params)
        labels = gen.generate_labels(self.image)
        self.assertEqual(labels.dtype, np.uint16)
        self.assertGreater(labels.max(), 0)
        with tempfile.TemporaryDirectory() as d:
            png, out = os.path.join(d, "img0.png"), os.path.join(d, "labels.png")
            S.write_png(png, self.image)
            p = self.params
            S.run_cli("amg", "--model", S.TINY, "--threads", 2, *S.cli_fp32(), png, "--out", out, "--quiet",
                      "--points-per-side", p["points_per_side"], "--points-per-batch", p["points_per_batch"],
                      "--pred-iou-thresh", p["pred_iou_thresh"],
                      "--stability-score-thresh", p["stability_score_thresh"],
                      "--stability-score-offset", p["stability_score_offset"],
                      "--box-nms-thresh", p["box_nms_thresh"])
            np.testing.assert_array_equal(S.read_png(out).astype(np.uint16), labels)

    def test_bad_arguments(self):
        for kw, text in [({"points_per_side": 0}, "points_per_side"), ({"output_mode": "coco_rle"}, "output_mode"),
                         ({"point_grids": [np.zeros((4, 2))]}, "point_grids")]:
            with self.subTest(kw=kw):
                with self.assertRaises(ValueError) as ctx:
                    medicosam.SamAutomaticMaskGenerator(self.sam, **kw)
                self.assertIn(text, str(ctx.exception))
        gen = medicosam.SamAutomaticMaskGenerator(self.sam)
        with self.assertRaises(medicosam.InputError):
            gen.generate(np.zeros((5, 5, 3), np.float64))


if __name__ == "__main__":
    unittest.main()
