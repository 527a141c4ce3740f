"""medicosam.Session: the same actions as `medicosam session --script` give the same label map."""
import json
import os
import tempfile
import unittest

import numpy as np

import _support as S
import medicosam

BREAST = os.path.join(S.SHARED, "data", "mri_tumor_3d_pyradiomics", "nifti", "breast1_image.nii.gz")
ACTIONS = [
    {"action": "new_object", "name": "lesion"},
    {"action": "set_box", "slice": 10, "box": [10, 40, 35, 80]},
    {"action": "propagate"},
    {"action": "commit"},
    {"action": "new_object", "name": "second"},
    {"action": "add_point", "slice": 5, "x": 20, "y": 60, "label": 1},
    {"action": "commit", "overwrite": True},
]


@unittest.skipUnless(hasattr(medicosam, "Session"), "built without segment::ImageSession")
class SessionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        S.require(S.TINY)
        S.require(BREAST)
        cls.sam = medicosam.load(S.TINY, threads=2, precision="fp32")

    def test_same_as_cli_script(self):
        with tempfile.TemporaryDirectory() as d:
            script, out = os.path.join(d, "actions.json"), os.path.join(d, "cli.nii.gz")
            with open(script, "w") as f:
                json.dump(ACTIONS, f)
            S.run_cli("session", "--model", S.TINY, "--threads", 2, *S.cli_fp32(), BREAST, "--script", script,
                      "--out", out, "--quiet")
            s = medicosam.Session(self.sam, BREAST, progress=False)
            results = s.run(ACTIONS)
            self.assertEqual(len(results), len(ACTIONS))
            ours = s.committed_labels()
            theirs = medicosam.read_volume(out)
            np.testing.assert_array_equal(ours.array, theirs.array.astype(np.uint16))
            np.testing.assert_allclose(ours.spacing, theirs.spacing, rtol=1e-6)
            counts = s.label_counts()
            self.assertEqual(sorted(counts), [1, 2])
            self.assertEqual(sum(counts.values()), int((ours.array > 0).sum()))
            # export writes what the CLI writes
            mine = os.path.join(d, "py.nii.gz")
            s.export(mine)
            np.testing.assert_array_equal(medicosam.read_volume(mine).array, theirs.array)

    def test_undo_redo_and_current_mask(self):
        s = medicosam.Session(self.sam, medicosam.read_volume(BREAST), progress=False)
        self.assertEqual(s.num_slices, 21)
        self.assertEqual(s.slice_size, (120, 45))
        s.apply({"action": "new_object"})
        s.apply('{"action": "set_box", "slice": 10, "box": [10, 40, 35, 80]}')
        m = s.current_mask(10)
        self.assertEqual(m.dtype, np.bool_)
        self.assertEqual(m.shape, (120, 45))
        self.assertGreater(m.sum(), 0)
        s.apply({"action": "commit"})
        self.assertEqual(list(s.label_counts()), [1])
        self.assertTrue(s.undo())
        self.assertEqual(s.label_counts(), {})
        self.assertTrue(s.redo())
        self.assertEqual(list(s.label_counts()), [1])
        self.assertEqual(s.state["format"], "medicosam-session-1")

    def test_cached_session_and_errors(self):
        with tempfile.TemporaryDirectory() as d:
            s = medicosam.Session(self.sam, BREAST, cache=os.path.join(d, "c.zarr"), progress=False)
            s.apply({"action": "new_object"})
            with self.assertRaises(medicosam.InputError) as ctx:
                s.apply({"action": "add_point", "slice": 99, "x": 1, "y": 1})
            self.assertIn("99", str(ctx.exception))
            with self.assertRaises(medicosam.InputError) as ctx:
                s.run([{"action": "new_object", "discard_current": True}, {"action": "fly"}])
            self.assertIn("action 2", str(ctx.exception))
            with self.assertRaises(ValueError):
                s.apply("{not json")


if __name__ == "__main__":
    unittest.main()
