"""medicosam.load / SamPredictor: parity with the official SAM fixtures and with the CLI,
NumPy edge cases, errors."""
import json
import os
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

import _support as S
import medicosam


def prompt_args(case, all_cases, results):
    kw = {"multimask_output": case["multimask_output"]}
    if case["point_coords"] is not None:
        kw["point_coords"] = np.array(case["point_coords"], np.float32)
        kw["point_labels"] = np.array(case["point_labels"], np.int32)
    if case["box"] is not None:
        kw["box"] = np.array(case["box"], np.float32)
    src = case["mask_input_from"]
    if src is not None:
        masks, iou, low = results[src["case"]]
        kw["mask_input"] = low[np.argmax(iou)][None, :, :]
    return kw


class ParityWithReference(unittest.TestCase):
    """Outputs equal the official segment_anything's on the parity fixtures."""

    @classmethod
    def setUpClass(cls):
        S.require(S.TINY)
        # fp32: the reference numerics ("auto" may pick bfloat16 on CPUs that have it).
        cls.sam = medicosam.load(S.TINY, threads=2, precision="fp32")

    def test_info(self):
        info = self.sam.info
        self.assertEqual(info["img_size"], 1024)
        self.assertEqual(info["embedding_size"], 64)
        self.assertEqual(info["embedding_channels"], 256)
        self.assertEqual(info["low_res_size"], 256)
        self.assertEqual(info["path"], S.TINY)
        self.assertGreater(info["parameters"], 0)

    def test_cases_match_reference(self):
        for im, image, by_name in S.image_cases():
            p = medicosam.SamPredictor(self.sam)
            p.set_image(image)
            self.assertEqual(p.original_size, tuple(im["original_size"]))
            self.assertEqual(p.input_size, tuple(im["input_size"]))
            ref_emb = S.parity_file(im["embedding"])
            emb = p.get_image_embedding()
            self.assertEqual(emb.shape, ref_emb.shape)
            self.assertEqual(emb.dtype, np.float32)
            self.assertLess(np.abs(emb - ref_emb).max(), 1e-4, im["name"])
            results = {}
            for name, case in by_name.items():
                with self.subTest(case=name):
                    masks, iou, low = p.predict(**prompt_args(case, by_name, results))
                    results[name] = (masks, iou, low)
                    ref_masks = S.parity_file(case["masks"])[0]
                    ref_iou = S.parity_file(case["iou_predictions"])[0]
                    self.assertEqual(masks.dtype, np.bool_)
                    self.assertEqual(masks.shape, ref_masks.shape)
                    self.assertEqual(iou.dtype, np.float32)
                    self.assertEqual(iou.shape, ref_iou.shape)
                    self.assertEqual(low.dtype, np.float32)
                    self.assertEqual(low.shape, (ref_masks.shape[0], 256, 256))
                    self.assertLess(np.abs(iou - ref_iou).max(), 1e-4)
                    if case.get("low_res_logits"):
                        ref_low = S.parity_file(case["low_res_logits"])[0]
                        self.assertLess(np.abs(low - ref_low).max(), 1e-4)
                    # Masks equal except where the logit is within 1e-3 of the threshold.
                    logits, _, _ = p.predict(**prompt_args(case, by_name, results), return_logits=True)
                    self.assertEqual(logits.dtype, np.float32)
                    np.testing.assert_array_equal(logits > 0, masks)
                    differ = masks != ref_masks
                    self.assertTrue(np.all(np.abs(logits[differ]) < 1e-3),
                                    "%d pixels differ away from the threshold" % differ.sum())
                    self.assertLess(differ.sum(), 0.001 * masks.size)


class SameAsCli(unittest.TestCase):
    """The module and `medicosam segment` give identical outputs for the same input."""

    def test_point_and_box(self):
        S.require(S.TINY)
        sam = medicosam.load(S.TINY, threads=2, precision="fp32")
        p = medicosam.SamPredictor(sam)
        image = S.parity_file("img0_image.npy")
        p.set_image(image)
        with tempfile.TemporaryDirectory() as d:
            png = os.path.join(d, "img0.png")
            S.write_png(png, image)
            for args, kw in [
                (["--point", "119,251,1", "--multimask"],
                 dict(point_coords=np.array([[119, 251]]), point_labels=np.array([1]), multimask_output=True)),
                (["--box", "237,80,342,217", "--point", "290,149.25,0"],
                 dict(point_coords=np.array([[290, 149.25]]), point_labels=np.array([0]),
                      box=np.array([237, 80, 342, 217]), multimask_output=False)),
            ]:
                with self.subTest(args=args):
                    out, logits = os.path.join(d, "m.png"), os.path.join(d, "l.npy")
                    j = json.loads(S.run_cli("segment", "--model", S.TINY, "--threads", 2, *S.cli_fp32(), "--image", png,
                                             *args, "--out", out, "--logits-out", logits, "--json"))
                    masks, iou, low = p.predict(**kw)
                    best = int(np.argmax(iou)) if kw["multimask_output"] else 0
                    self.assertEqual(j["selected"], best)
                    np.testing.assert_array_equal(np.array(j["iou_predictions"], np.float32), iou)
                    np.testing.assert_array_equal(S.read_png(out) > 0, masks[best])
                    np.testing.assert_array_equal(np.load(logits)[0, 0], low[best])

    def test_same_error_message_as_cli(self):
        missing = os.path.join(tempfile.gettempdir(), "medicosam-no-such-model.pth")
        with tempfile.TemporaryDirectory() as d:
            png = os.path.join(d, "img.png")
            S.write_png(png, S.parity_file("img0_image.npy"))
            cli = S.cli_error("segment", "--model", missing, "--image", png, "--box", "1,1,5,5", "--out",
                              os.path.join(d, "o.png"))
        with self.assertRaises(medicosam.InputError) as ctx:
            medicosam.load(missing)
        self.assertEqual(cli, "medicosam: error: " + str(ctx.exception))
        self.assertIn(missing, str(ctx.exception))


SAM_STYLE_SCRIPT = '''
import numpy as np
from segment_anything import SamPredictor, sam_model_registry

sam = sam_model_registry["vit_b"](checkpoint=CHECKPOINT)
predictor = SamPredictor(sam)
predictor.set_image(IMAGE)
input_point = np.array([[119, 251]])
input_label = np.array([1])
masks, scores, logits = predictor.predict(
    point_coords=input_point,
    point_labels=input_label,
    multimask_output=True,
)
mask_input = logits[np.argmax(scores), :, :]
masks2, scores2, _ = predictor.predict(
    point_coords=np.array([[119, 251], [290, 149.25]]),
    point_labels=np.array([1, 0]),
    mask_input=mask_input[None, :, :],
    multimask_output=False,
)
box_masks, _, _ = predictor.predict(point_coords=None, point_labels=None,
                                    box=np.array([237, 80, 342, 217])[None, :], multimask_output=False)
embedding = predictor.get_image_embedding()
RESULT = (masks, scores, masks2, scores2, box_masks, embedding.shape)
'''


class DropInScript(unittest.TestCase):
    """A script written for segment_anything runs unchanged with medicosam under that name."""

    def test_script(self):
        S.require(S.TINY)
        saved = sys.modules.get("segment_anything")
        sys.modules["segment_anything"] = medicosam
        try:
            ns = {"CHECKPOINT": S.TINY, "IMAGE": S.parity_file("img0_image.npy")}
            exec(compile(SAM_STYLE_SCRIPT, "sam_style_script", "exec"), ns)
        finally:
            if saved is None:
                del sys.modules["segment_anything"]
            else:
                sys.modules["segment_anything"] = saved
        masks, scores, masks2, scores2, box_masks, shape = ns["RESULT"]
        # The same calls through medicosam's own names give the same arrays.
        p = medicosam.SamPredictor(medicosam.load(S.TINY))
        p.set_image(S.parity_file("img0_image.npy"))
        m, sc, lo = p.predict(point_coords=np.array([[119, 251]]), point_labels=np.array([1]))
        np.testing.assert_array_equal(masks, m)
        np.testing.assert_array_equal(scores, sc)
        m2, sc2, _ = p.predict(point_coords=np.array([[119, 251], [290, 149.25]]), point_labels=np.array([1, 0]),
                               mask_input=lo[np.argmax(sc)][None], multimask_output=False)
        np.testing.assert_array_equal(masks2, m2)
        np.testing.assert_array_equal(scores2, sc2)
        self.assertEqual(masks.shape, (3, 300, 420))
        self.assertEqual(box_masks.shape, (1, 300, 420))
        self.assertEqual(shape, (1, 256, 64, 64))
        # and agree with the official implementation's IoU predictions (bfloat16 encoders within 5e-3)
        by_name = {c["name"]: c for c in S.cases()["images"][0]["cases"]}
        ref = S.parity_file(by_name["img0_point_multi"]["iou_predictions"])[0]
        self.assertLess(np.abs(scores - ref).max(), 5e-3)


class ArrayEdgeCases(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        S.require(S.TINY)
        cls.sam = medicosam.load(S.TINY, threads=2)
        cls.image = S.parity_file("img0_image.npy")
        cls.p = medicosam.SamPredictor(cls.sam)
        cls.p.set_image(cls.image)
        cls.ref = cls.p.predict(point_coords=[[119, 251]], point_labels=[1])

    def assert_same(self, a, b):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)

    def predict_on(self, image, **kw):
        p = medicosam.SamPredictor(self.sam)
        p.set_image(image, **kw)
        return p.predict(point_coords=[[119, 251]], point_labels=[1])

    def test_non_contiguous_and_fortran_images(self):
        flipped = self.image[:, ::-1]  # negative stride view
        self.assertFalse(flipped.flags["C_CONTIGUOUS"])
        self.assert_same(self.predict_on(flipped), self.predict_on(np.ascontiguousarray(flipped)))
        fortran = np.asfortranarray(self.image)
        self.assert_same(self.predict_on(fortran), self.ref)
        padded = np.zeros((300, 420, 4), np.uint8)
        padded[..., :3] = self.image
        self.assert_same(self.predict_on(padded[..., :3]), self.ref)  # strided channel view

    def test_gray_and_bgr(self):
        img1 = S.parity_file("img1_image.npy")  # gray replicated to 3 channels
        self.assert_same(self.predict_on(img1[..., 0]), self.predict_on(img1))
        self.assert_same(self.predict_on(img1[..., :1]), self.predict_on(img1))
        self.assert_same(self.predict_on(self.image[..., ::-1].copy(), image_format="BGR"), self.ref)

    def test_prompt_dtypes_and_shapes(self):
        variants = [
            dict(point_coords=np.array([[119, 251]], np.int64), point_labels=np.array([1], np.int64)),
            dict(point_coords=np.array([[119, 251]], np.float32), point_labels=np.array([1.0])),
            dict(point_coords=np.array([[119, 251]], np.float64), point_labels=[True]),
            dict(point_coords=np.array([[0, 119, 0], [0, 251, 0]]).T[1:2], point_labels=[1]),  # non-contiguous
        ]
        for kw in variants:
            with self.subTest(kw=kw):
                self.assert_same(self.p.predict(**kw), self.ref)
        box = self.p.predict(box=np.array([237, 80, 342, 217], np.int32), multimask_output=False)
        self.assert_same(self.p.predict(box=[[237.0, 80.0, 342.0, 217.0]], multimask_output=False), box)
        low = self.ref[2][0]
        kw = dict(point_coords=[[119, 251]], point_labels=[1], multimask_output=False)
        r = self.p.predict(mask_input=low[None], **kw)
        self.assert_same(self.p.predict(mask_input=low, **kw), r)
        self.assert_same(self.p.predict(mask_input=low[None, None].astype(np.float64), **kw), r)

    def test_outputs_are_owned_arrays_without_copies(self):
        masks, iou, low = self.ref
        for a in (masks, iou, low):
            self.assertTrue(a.flags["C_CONTIGUOUS"])
            self.assertFalse(a.flags["OWNDATA"])  # wraps the C++ buffer
            self.assertIsNotNone(a.base)
        fresh = self.p.predict(point_coords=[[119, 251]], point_labels=[1])[0]
        before = bool(fresh[0, 0, 0])
        masks_copy = masks.copy()
        masks_copy[0, 0, 0] = not before
        fresh[0, 0, 0] = not before  # writable, and no other result shares its buffer
        self.assertEqual(bool(self.p.predict(point_coords=[[119, 251]], point_labels=[1])[0][0, 0, 0]), before)
        self.assertEqual(bool(masks[0, 0, 0]), before)

    def test_embedding_round_trip(self):
        emb = self.p.get_image_embedding()
        q = medicosam.SamPredictor(self.sam)
        q.set_embedding(emb, original_size=self.image.shape[:2])
        self.assert_same(q.predict(point_coords=[[119, 251]], point_labels=[1]), self.ref)
        q.set_embedding(self.p.get_embedding())
        self.assert_same(q.predict(point_coords=[[119, 251]], point_labels=[1]), self.ref)
        h = medicosam.SamPredictor(self.sam)
        h.set_embedding(emb.astype(np.float16), original_size=(300, 420))
        m16, iou16, _ = h.predict(point_coords=[[119, 251]], point_labels=[1])
        self.assertLess(np.abs(iou16 - self.ref[1]).max(), 1e-2)
        q.reset_image()
        self.assertFalse(q.is_image_set)
        self.assertIsNone(q.original_size)

    def test_predictors_share_a_model_but_not_images(self):
        a = medicosam.SamPredictor(self.sam)
        b = medicosam.SamPredictor(self.sam)
        a.set_image(self.image)
        b.set_image(S.parity_file("img1_image.npy"))
        self.assert_same(a.predict(point_coords=[[119, 251]], point_labels=[1]), self.ref)
        self.assertIs(a.model, self.sam)


class BadInputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        S.require(S.TINY)
        cls.sam = medicosam.load(S.TINY, threads=2)
        cls.p = medicosam.SamPredictor(cls.sam)
        cls.p.set_image(S.parity_file("img0_image.npy"))

    def raises(self, exc, text, fn, *a, **kw):
        with self.assertRaises(exc) as ctx:
            fn(*a, **kw)
        self.assertIn(text, str(ctx.exception))
        return ctx.exception

    def test_images(self):
        p = medicosam.SamPredictor(self.sam)
        self.raises(medicosam.InputError, "uint8", p.set_image, np.zeros((10, 10, 3), np.float32))
        self.raises(ValueError, "got (10, 10, 4)", p.set_image, np.zeros((10, 10, 4), np.uint8))
        self.raises(ValueError, "got (10,)", p.set_image, np.zeros((10,), np.uint8))
        self.raises(ValueError, "empty image", p.set_image, np.zeros((0, 10, 3), np.uint8))
        self.raises(ValueError, "image_format", p.set_image, np.zeros((10, 10, 3), np.uint8), "RGBA")
        self.raises(ValueError, "None", p.set_image, None)
        self.raises(medicosam.Error, "set_image", p.predict, point_coords=[[1, 1]], point_labels=[1])
        self.raises(medicosam.Error, "set_image", p.get_image_embedding)

    def test_prompts(self):
        p = self.p
        self.raises(ValueError, "point_labels must be supplied", p.predict, point_coords=[[1, 1]])
        self.raises(ValueError, "without point_coords", p.predict, point_labels=[1])
        self.raises(ValueError, "(N, 2)", p.predict, point_coords=[1, 1], point_labels=[1])
        self.raises(ValueError, "point_labels", p.predict, point_coords=[[1, 1]], point_labels=[1, 1])
        self.raises(ValueError, "labels must be 1", p.predict, point_coords=[[1, 1]], point_labels=[2])
        self.raises(ValueError, "not finite", p.predict, point_coords=[[np.nan, 1]], point_labels=[1])
        self.raises(ValueError, "outside", p.predict, point_coords=[[1000, 1]], point_labels=[1])
        self.raises(ValueError, "box", p.predict, box=[1, 2, 3])
        self.raises(ValueError, "low-res logits", p.predict, point_coords=[[1, 1]], point_labels=[1],
                    mask_input=np.zeros((1, 64, 64), np.float32))
        self.raises(ValueError, "no prompt", p.predict)
        self.raises(ValueError, "non-numeric", p.predict, point_coords=[["a", "b"]], point_labels=[1])

    def test_embeddings(self):
        p = medicosam.SamPredictor(self.sam)
        self.raises(ValueError, "original_size", p.set_embedding, np.zeros((1, 256, 64, 64), np.float32))
        self.raises(ValueError, "does not fit", p.set_embedding, np.zeros((1, 128, 64, 64), np.float32),
                    original_size=(10, 10))
        self.raises(ValueError, "(height, width)", p.set_embedding, np.zeros((1, 256, 64, 64), np.float32),
                    original_size=(10, -1))

    def test_load(self):
        self.raises(ValueError, "device", medicosam.load, S.TINY, device="tpu")
        self.raises(ValueError, "precision", medicosam.load, S.TINY, precision="int4")
        self.raises(ValueError, "expected a medicosam.Sam", medicosam.SamPredictor, "not a model")
        with tempfile.NamedTemporaryFile(suffix=".pth") as f:
            f.write(b"this is not a checkpoint")
            f.flush()
            e = self.raises(medicosam.InputError, f.name, medicosam.load, f.name)
            self.assertIsInstance(e, medicosam.Error)


class Concurrency(unittest.TestCase):
    def test_gil_released_during_encode(self):
        S.require(S.TINY)
        sam = medicosam.load(S.TINY, threads=1)
        image = np.ascontiguousarray(np.tile(S.parity_file("img0_image.npy"), (3, 2, 1)))
        p = medicosam.SamPredictor(sam)
        t0 = time.perf_counter()
        p.set_image(image)
        encode = time.perf_counter() - t0
        done = threading.Event()
        th = threading.Thread(target=lambda: (p.set_image(image), done.set()))
        count = 0
        th.start()
        while not done.is_set():
            count += 1
        th.join()
        # With the GIL held the loop would only run between switch intervals.
        per_second = count / max(encode, 1e-3)
        self.assertGreater(per_second, 200000, "main thread ran %d iterations during %.2f s" % (count, encode))


if __name__ == "__main__":
    unittest.main()
