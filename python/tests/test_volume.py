"""read_volume / Volume / EmbeddingCache / segment_mask_in_volume: against nibabel and the CLI."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest

import numpy as np

import _support as S
import medicosam

DATA = os.path.join(S.SHARED, "data", "mri_tumor_3d_pyradiomics")
BREAST = os.path.join(DATA, "nifti", "breast1_image.nii.gz")  # 45 x 120 x 21, LPS
BOX = (10, 40, 35, 80)  # x0, y0, x1, y1 on axial slice 10


class Volumes(unittest.TestCase):
    def test_read_volume_matches_nibabel(self):
        try:
            import nibabel
        except ImportError:
            raise unittest.SkipTest("python3-nibabel not installed")
        S.require(BREAST)
        v = medicosam.read_volume(BREAST)
        ref = nibabel.load(BREAST)
        data = np.asanyarray(ref.dataobj)
        self.assertEqual(v.size, list(data.shape))
        self.assertEqual(v.shape, data.shape[::-1])
        self.assertEqual(v.dtype, data.dtype)
        np.testing.assert_array_equal(v.array, data.T)  # nibabel is x-fastest Fortran order, ours (z, y, x)
        np.testing.assert_allclose(v.spacing, ref.header.get_zooms(), rtol=1e-5)
        self.assertEqual(v.format, "NIfTI")
        self.assertEqual(v.orientation, "".join(nibabel.aff2axcodes(ref.affine)))
        # LPS origin = RAS origin with x, y negated
        ras = ref.affine[:3, 3]
        np.testing.assert_allclose(v.origin, [-ras[0], -ras[1], ras[2]], atol=1e-3)

    def test_array_is_a_view(self):
        v = medicosam.read_volume(S.require(BREAST))
        a = v.array
        self.assertFalse(a.flags["OWNDATA"])
        a[0, 0, 0] = 1234
        self.assertEqual(v.array[0, 0, 0], 1234)
        del v  # the array keeps the volume alive
        self.assertEqual(a[0, 0, 0], 1234)

    def test_from_array(self):
        arr = np.arange(2 * 3 * 4, dtype=np.int64).reshape(2, 3, 4)
        v = medicosam.Volume(arr, spacing=(0.5, 0.5, 2.0))
        self.assertEqual(v.size, [4, 3, 2])
        self.assertEqual(v.dtype, np.float64)  # int64 is stored as float64
        np.testing.assert_array_equal(v.array, arr)
        img = medicosam.Volume(np.zeros((5, 6), np.uint8))
        self.assertTrue(img.is_2d)
        self.assertEqual(img.shape, (5, 6))
        rgb = medicosam.Volume(np.zeros((5, 6, 3), np.uint8), rgb=True)
        self.assertEqual(rgb.shape, (5, 6, 3))
        with self.assertRaises(ValueError):
            medicosam.Volume(np.zeros((2, 2, 2, 2), np.float32))
        with self.assertRaises(ValueError):
            medicosam.Volume(np.zeros((0, 4), np.float32))

    def test_read_errors_name_the_file(self):
        missing = os.path.join(tempfile.gettempdir(), "medicosam-missing.nii.gz")
        with self.assertRaises(medicosam.InputError) as ctx:
            medicosam.read_volume(missing)
        self.assertIn(missing, str(ctx.exception))
        with tempfile.NamedTemporaryFile(suffix=".nii.gz") as f:
            f.write(b"\x1f\x8b garbage")
            f.flush()
            with self.assertRaises(medicosam.InputError) as ctx:
                medicosam.read_volume(f.name)
            self.assertIn(f.name, str(ctx.exception))


class Propagation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        S.require(S.TINY)
        S.require(BREAST)
        cls.sam = medicosam.load(S.TINY, threads=2, precision="fp32")
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_same_as_cli_propagate(self):
        cli_cache = os.path.join(self.tmp.name, "cli.zarr")
        out = os.path.join(self.tmp.name, "cli_seg.nii.gz")
        j = json.loads(S.run_cli("propagate", "--model", S.TINY, "--threads", 2, *S.cli_fp32(), "--volume", BREAST, "--cache",
                                 cli_cache, "--slice", 10, "--box", ",".join(map(str, BOX)), "--out", out,
                                 "--json"))
        predictor = medicosam.SamPredictor(self.sam)
        vol = medicosam.read_volume(BREAST)
        cache = medicosam.precompute_image_embeddings(predictor, vol, os.path.join(self.tmp.name, "py.zarr"),
                                                      verbose=False)
        self.assertTrue(cache.complete)
        self.assertEqual(len(cache), 21)
        # The Python cache and the CLI's hold the same embeddings.
        cli = medicosam.EmbeddingCache(self.sam, vol, cli_cache)
        self.assertEqual(cli.compute(progress=False)["computed"], 0)
        np.testing.assert_array_equal(cli.embedding(10).features, cache.embedding(10).features)

        mask = medicosam.segment_slice(predictor, cache, 10, box=np.array(BOX))
        self.assertEqual(mask.shape, cache.slice_size)
        self.assertGreater(mask.sum(), 0)
        seg = np.zeros((cache.num_slices,) + cache.slice_size, np.uint8)
        seg[10] = mask
        calls = []
        seg2, (z0, z1) = medicosam.segment_mask_in_volume(seg, predictor, cache, [10], False, False, 0.5,
                                                          "single_point", update_progress=calls.append,
                                                          box_extension=0.05)
        self.assertIs(seg2, seg)  # updated in place, as micro_sam does
        self.assertEqual((z0, z1), (j["z_min"], j["z_max"]))
        self.assertEqual(len(calls), j["decoded_slices"])
        ours = cache.to_volume(seg).array
        theirs = medicosam.read_volume(out).array
        np.testing.assert_array_equal(ours, theirs.astype(np.uint16))
        self.assertEqual(int(ours.sum()), j["voxels"])

    def test_bad_arguments(self):
        predictor = medicosam.SamPredictor(self.sam)
        vol = medicosam.read_volume(BREAST)
        cache = medicosam.EmbeddingCache(predictor, vol, os.path.join(self.tmp.name, "bad.zarr"))
        with self.assertRaises(ValueError) as ctx:
            cache.embedding(3)
        self.assertIn("compute()", str(ctx.exception))
        with self.assertRaises(ValueError):
            cache.embedding(99)
        seg = np.zeros((21, 5, 5), np.uint8)
        with self.assertRaises(ValueError) as ctx:
            medicosam.segment_mask_in_volume(seg, predictor, cache, [3], False, False, 0.5, "box")
        self.assertIn("(21, 120, 45)", str(ctx.exception))
        with self.assertRaises(ValueError):
            medicosam.segment_mask_in_volume(np.zeros((21, 120, 45)), predictor, cache, [3], False, False, 0.5,
                                             "sideways")
        other = np.zeros((4, 30, 30), np.float32)
        with self.assertRaises(ValueError):  # a cache made for other data
            medicosam.EmbeddingCache(predictor, other, os.path.join(self.tmp.name, "bad.zarr"))

    def test_ctrl_c_stops_embedding_and_resumes(self):
        """SIGINT during compute() raises KeyboardInterrupt between slices; the next call resumes."""
        cache_dir = os.path.join(self.tmp.name, "interrupted.zarr")
        script = textwrap.dedent("""
            import os, signal, sys, threading, time, numpy as np, medicosam
            sam = medicosam.load(sys.argv[1], threads=1)
            vol = medicosam.Volume(np.random.default_rng(0).integers(0, 255, (12, 64, 64)).astype(np.uint8))
            cache = medicosam.EmbeddingCache(sam, vol, sys.argv[2])
            def interrupt_after_first_slice():
                while not cache.has(0):
                    time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGINT)
            threading.Thread(target=interrupt_after_first_slice, daemon=True).start()
            try:
                cache.compute(progress=False)
            except KeyboardInterrupt:
                n = sum(cache.has(i) for i in range(len(cache)))
                print("interrupted", n, flush=True)
                sys.exit(3)
            print("finished", flush=True)
        """)
        p = subprocess.run([sys.executable, "-c", script, S.TINY, cache_dir], capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        done = int(p.stdout.split()[1])
        self.assertGreater(done, 0)
        self.assertLess(done, 12)
        vol = medicosam.Volume(np.random.default_rng(0).integers(0, 255, (12, 64, 64)).astype(np.uint8))
        cache = medicosam.EmbeddingCache(self.sam, vol, cache_dir)
        self.assertFalse(cache.complete)
        stats = cache.compute(progress=False)
        self.assertEqual(stats["reused"], done)
        self.assertEqual(stats["computed"], 12 - done)
        self.assertTrue(cache.complete)


if __name__ == "__main__":
    unittest.main()
