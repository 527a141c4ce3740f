#!/usr/bin/python3
"""Test tool (never imported by medicosam): writes the reference fixtures
tests/segment/data/amg_*.json with the OFFICIAL Segment Anything automatic mask
generator, for the crop-layer and min_mask_region_area code paths that the
shared fixtures (../shared/fixtures/sam_parity/amg_*_img0.json) leave empty.

The model and image are the shared parity ones: the tiny random-weight SAM
(sam_tiny_seed0.pth: encoder embed 64, depth 4, 2 heads, global blocks 1 and 3)
and a 56x59 window of img0 (rows 100:156, cols 150:209). The window is small on
purpose: with random weights every mask spans its whole crop, and only in an
image this small do some crop masks stay clear of the "near an inner crop
edge" filter (the image edge is within 20 px of the inner edges of the two
right-hand crops, not of the two left-hand ones), so the output holds masks
from crops as well as from the full image. It also keeps the C++ test fast
(the cost is one encoder pass per crop plus one decoder pass per point).

Run (Debian python3-torch 1.13 + python3-torchvision 0.14 + python3-opencv):
  git --git-dir=<facebookresearch/segment-anything clone>/.git archive HEAD segment_anything \
      | tar -x -C /tmp/sam-official
  /usr/bin/python3 tests/segment/data/make_amg_fixtures.py --sam /tmp/sam-official \
      --fixtures ../shared/fixtures/sam_parity --out tests/segment/data
Made with segment-anything commit dca509fe793f601edb92606367a655c15ac00fdf;
the output is deterministic (1 thread).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

WINDOW = {"rows": [100, 156], "cols": [150, 209]}

# Each run: generator keyword arguments (everything else at the official
# defaults) and what it is meant to exercise.
RUNS = {
    "crops": (
        dict(points_per_side=4, points_per_batch=64, pred_iou_thresh=0.0,
             stability_score_thresh=0.0, box_nms_thresh=1.0, crop_n_layers=1,
             crop_n_points_downscale_factor=2),
        "crop_n_layers=1 with the default overlap: the masks of the two left-hand crops are all "
        "dropped as near an inner crop edge, those of the right-hand crops are kept; the NMS "
        "across crops (crop_nms_thresh 0.7, score 1/crop area, ties within a crop) keeps one "
        "mask per crop box.",
    ),
    "min_area": (
        dict(points_per_side=4, points_per_batch=6, pred_iou_thresh=0.0,
             stability_score_thresh=0.25, stability_score_offset=1.0, box_nms_thresh=1.0,
             min_mask_region_area=5),
        "min_mask_region_area=5 without crops, 16 points in batches of 6: most masks lose small holes/islands (score 0 in "
        "the post-processing NMS), the others stay unchanged (score 1) and move to the front.",
    ),
    "crops_min_area": (
        dict(points_per_side=4, points_per_batch=64, pred_iou_thresh=0.0,
             stability_score_thresh=0.0, box_nms_thresh=0.7, crop_nms_thresh=0.9,
             crop_n_layers=1, crop_n_points_downscale_factor=2, crop_overlap_ratio=0.8,
             min_mask_region_area=5),
        "both: crops that overlap a lot (ratio 0.8) so boxes of different crops have IoU "
        "0.7-0.8; the post-processing NMS uses max(box_nms_thresh, crop_nms_thresh) = 0.9 and "
        "keeps all of them (with box_nms_thresh 0.7 alone it would keep 1).",
    ),
}


# generate_crop_boxes / build_all_layer_point_grids cases: (height, width,
# n_layers, overlap_ratio, points_per_side, downscale factor). Cheap to compare
# (no model), so they cover more layers and odd sizes than the runs above.
CROP_CASES = [
    (300, 420, 2, 512 / 1500, 32, 2),
    (56, 59, 1, 0.8, 4, 2),
    (1024, 768, 3, 512 / 1500, 32, 2),
    (57, 1001, 2, 0.5, 16, 3),
    (513, 511, 2, 0.1, 10, 1),
]


def write_crop_boxes(out_dir, commit):
    from segment_anything.utils.amg import build_all_layer_point_grids, generate_crop_boxes

    cases = []
    for h, w, layers, overlap, pps, down in CROP_CASES:
        boxes, layer_idxs = generate_crop_boxes((h, w), layers, overlap)
        grids = build_all_layer_point_grids(pps, layers, down)
        cases.append({
            "height": h, "width": w, "crop_n_layers": layers, "crop_overlap_ratio": overlap,
            "points_per_side": pps, "crop_n_points_downscale_factor": down,
            "crop_boxes": [[int(v) for v in b] for b in boxes],
            "layer_idxs": [int(v) for v in layer_idxs],
            "grid_points_per_layer": [int(g.shape[0]) for g in grids],
            "grid_first_last_per_layer": [[[float(v) for v in g[0]], [float(v) for v in g[-1]]]
                                          if len(g) else [] for g in grids],
        })
    doc = {"made_by": "tests/segment/data/make_amg_fixtures.py",
           "reference": f"facebookresearch/segment-anything {commit}: "
                        "segment_anything.utils.amg.generate_crop_boxes (XYXY) and "
                        "build_all_layer_point_grids",
           "cases": cases}
    path = os.path.join(out_dir, "amg_crop_boxes.json")
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"{path}: {len(cases)} cases", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sam", required=True, help="folder holding the official segment_anything package")
    ap.add_argument("--fixtures", required=True, help="../shared/fixtures/sam_parity")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", default=None, help="run names to (re)make")
    args = ap.parse_args()

    sys.path.insert(0, args.sam)
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.build_sam import _build_sam

    torch.set_num_threads(1)
    # _build_sam is the official builder behind sam_model_registry; the
    # registry only names the ViT-H/L/B sizes, so it is called with the tiny
    # encoder's sizes (the checkpoint's load_state_dict checks every shape).
    sam = _build_sam(encoder_embed_dim=64, encoder_depth=4, encoder_num_heads=2,
                     encoder_global_attn_indexes=[1, 3],
                     checkpoint=os.path.join(args.fixtures, "sam_tiny_seed0.pth")).eval()
    full = np.load(os.path.join(args.fixtures, "img0_image.npy"))
    (r0, r1), (c0, c1) = WINDOW["rows"], WINDOW["cols"]
    image = np.ascontiguousarray(full[r0:r1, c0:c1])

    try:
        commit = subprocess.run(["git", "-C", args.sam, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "dca509fe793f601edb92606367a655c15ac00fdf (git archive, no .git)"
    import torchvision

    if not args.only or "crop_boxes" in args.only:
        write_crop_boxes(args.out, commit)
    for name, (params, purpose) in RUNS.items():
        if args.only and name not in args.only:
            continue
        gen = SamAutomaticMaskGenerator(sam, output_mode="uncompressed_rle", **params)
        with torch.no_grad():
            out = gen.generate(image)
        masks = []
        for m in out:
            masks.append({
                "bbox": [int(v) for v in m["bbox"]],
                "area": int(m["area"]),
                "predicted_iou": float(m["predicted_iou"]),
                "stability_score": float(m["stability_score"]),
                "point_coords": [[float(v) for v in p] for p in m["point_coords"]],
                "crop_box": [int(v) for v in m["crop_box"]],
                "rle": {"size": [int(v) for v in m["segmentation"]["size"]],
                        "counts": [int(v) for v in m["segmentation"]["counts"]]},
            })
        doc = {
            "made_by": "tests/segment/data/make_amg_fixtures.py",
            "reference": f"facebookresearch/segment-anything {commit}, torch {torch.__version__}, "
                         f"torchvision {torchvision.__version__}",
            "model": "sam_tiny_seed0.pth (shared fixtures/sam_parity)",
            "image": {"file": "img0_image.npy", **WINDOW},
            "run": name,
            "purpose": purpose,
            "params": params,
            "num_masks": len(masks),
            "note": "order = SamAutomaticMaskGenerator.generate output order; bbox and crop_box "
                    "XYWH (bbox: inclusive max, w = x_max - x_min); rle = the official "
                    "uncompressed RLE (column-major, counts start with the 0-run).",
            "masks": masks,
        }
        path = os.path.join(args.out, f"amg_{name}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        os.replace(path + ".tmp", path)
        crops = sorted({tuple(m["crop_box"]) for m in masks})
        print(f"{path}: {len(masks)} masks, crop boxes {crops}", flush=True)


if __name__ == "__main__":
    main()
