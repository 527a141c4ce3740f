#!/usr/bin/python3
"""What 3D Slicer's MONAI Label module does against a MONAI Label server,
scripted with Debian's python3 + requests + nibabel (written from the protocol
facts in ../shared/docs/PROTOCOLS.md, not from Slicer's code): auth, info,
datastore, upload an image with Slicer's fixed multipart boundary, next
sample, click on the tumour with the 2D and the 3D deepgrow model, check the
label's grid and that the clicked voxel is inside, save the label, next sample.

usage: slicer_client_test.py MEDICOSAM_CLI SHARED_DIR
Starts `medicosam serve` itself on a free port of 127.0.0.1 with a temporary
datastore and stops it at the end. Exits non-zero on the first failure.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import nibabel as nib
import numpy as np
import requests

BOUNDARY = "----------lImIt_of_THE_fIle_eW_$"


def multipart(fields):
    """fields: list of (name, filename or None, bytes) -> (body, content type), as Slicer's client builds it."""
    body = b""
    for name, filename, data in fields:
        body += ("--" + BOUNDARY + "\r\n").encode()
        disp = 'Content-Disposition: form-data; name="%s"' % name
        if filename:
            disp += '; filename="%s"' % filename
        body += (disp + "\r\n").encode()
        if filename:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + data + b"\r\n"
    body += ("--" + BOUNDARY + "--\r\n").encode()
    return body, "multipart/form-data; boundary=" + BOUNDARY


def parse_multipart_reply(resp):
    """Returns (form fields without filename, {filename: bytes}), the way cgi.FieldStorage splits them."""
    ctype = resp.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data"), ctype
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    form, files = {}, {}
    for part in resp.content.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part[2:].partition(b"\r\n\r\n")
        data = data[:-2] if data.endswith(b"\r\n") else data
        headers = head.decode()
        name = headers.split('name="', 1)[1].split('"', 1)[0]
        if 'filename="' in headers:
            files[headers.split('filename="', 1)[1].split('"', 1)[0]] = data
        else:
            form[name] = data.decode()
    return form, files


def tumour_click(label_path):
    lab = np.asarray(nib.load(label_path).dataobj)
    z = int(np.argmax((lab > 0).sum(axis=(0, 1))))
    ii, jj = np.nonzero(lab[:, :, z])
    ci, cj = ii.mean(), jj.mean()
    n = int(np.argmin((ii - ci) ** 2 + (jj - cj) ** 2))
    return [int(ii[n]), int(jj[n]), z], lab


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)
    print("ok:", what)


def main():
    cli, shared = sys.argv[1], sys.argv[2]
    data = os.path.join(shared, "data/mri_tumor_3d_pyradiomics/nifti")
    tmp = tempfile.mkdtemp(prefix="medicosam_slicer_")
    datastore = os.path.join(tmp, "datastore")
    os.makedirs(datastore)
    shutil.copy(os.path.join(data, "brain2_image.nii.gz"), os.path.join(datastore, "brain2.nii.gz"))
    log = open(os.path.join(tmp, "server.log"), "w")
    server = subprocess.Popen([cli, "serve", "--datastore", datastore, "--port", "0", "--threads", "2"],
                              stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        url = None
        deadline = time.time() + 180
        while time.time() < deadline and url is None:
            ready, _, _ = select.select([server.stdout], [], [], 1.0)
            if ready:
                line = server.stdout.readline()
                if not line:
                    break
                if "listening on " in line:
                    url = line.split("listening on ", 1)[1].strip()
        check(url is not None, "server started and printed its URL")
        s = requests.Session()

        # 1. Slicer asks /auth/ first, then /info/.
        check(s.get(url + "/auth/").json()["enabled"] is False, "auth is off")
        info = s.get(url + "/info/").json()
        check("config" not in info, "no top-level config in /info/")
        deepgrow = {n: m for n, m in info["models"].items() if m["type"] == "deepgrow"}
        m2d = [n for n, m in deepgrow.items() if m["dimension"] == 2][0]
        m3d = [n for n, m in deepgrow.items() if m["dimension"] == 3][0]
        print("models:", sorted(info["models"]))

        # 2. Upload the brain MRI with the deprecated PUT /datastore/?image= and Slicer's boundary.
        image_path = os.path.join(data, "brain1_image.nii.gz")
        body, ctype = multipart([("params", None, b'{"client_id":"slicer"}'),
                                 ("file", "brain1_image.nii.gz", open(image_path, "rb").read())])
        r = s.put(url + "/datastore/?image=brain1", data=body, headers={"Content-Type": ctype})
        check(r.status_code == 200 and r.json()["image"] == "brain1", "image uploaded (%d %s)" % (r.status_code, r.text))
        stats = s.get(url + "/datastore/?output=stats").json()
        check(stats["total"] == 2 and stats["completed"] == 0, "datastore stats %s" % stats)

        # 3. Next sample (first unlabelled by id): brain1.
        nxt = s.post(url + "/activelearning/first", json={"client_id": "slicer"}).json()
        check(nxt["id"] == "brain1" and os.path.exists(nxt["path"]), "next sample is brain1")

        # 4. Click on the tumour: the 2D model (clicks of the current slice + its index), then the 3D model.
        click, truth = tumour_click(os.path.join(data, "brain1_label.nii.gz"))
        ref = nib.load(image_path)
        for model, dim in ((m2d, 2), (m3d, 3)):
            params = {"label": "tumour", "foreground": [click], "background": []}
            if dim == 2:
                params["slice"] = click[2]
            body, ctype = multipart([("params", None, json.dumps(params).encode())])
            t0 = time.time()
            r = s.post(url + "/infer/%s?image=brain1" % model, data=body, headers={"Content-Type": ctype})
            check(r.status_code == 200, "%s infer (%d) in %.2f s" % (model, r.status_code, time.time() - t0))
            form, files = parse_multipart_reply(r)
            check("params" in form and len(files) == 1, "multipart reply: params form field + one file")
            name, blob = next(iter(files.items()))
            check(name.endswith(".nii.gz"), "result file name %s" % name)
            path = os.path.join(tmp, "%s_%s" % (model, name))
            open(path, "wb").write(blob)
            res = nib.load(path)
            check(res.shape == ref.shape, "label shape %s == image shape %s" % (res.shape, ref.shape))
            check(np.allclose(res.affine, ref.affine, atol=1e-3), "label affine == image affine")
            lab = np.asarray(res.dataobj)
            check(lab[tuple(click)] > 0, "clicked voxel %s is inside the %dD mask" % (click, dim))
            zs = np.nonzero((lab > 0).sum(axis=(0, 1)))[0]
            if dim == 2:
                check(list(zs) == [click[2]], "2D result only on the clicked slice")
            else:
                check(len(zs) > 1, "3D result on slices %s" % list(zs))
            dice = 2.0 * ((lab > 0) & (truth > 0)).sum() / max(1, (lab > 0).sum() + (truth > 0).sum())
            print("  %s: Dice vs the reference lesion %.3f, params %s" % (model, dice, form["params"][:120]))
            last = blob

        # 5. Save the label as Slicer does (label + params with label_info), then the next sample is brain2.
        body, ctype = multipart([("label", "brain1_label.nii.gz", last),
                                 ("params", None, json.dumps({"label_info": [{"name": "tumour", "idx": 1}]}).encode())])
        r = s.put(url + "/datastore/label?image=brain1&tag=final", data=body, headers={"Content-Type": ctype})
        check(r.status_code == 200, "label saved (%d %s)" % (r.status_code, r.text))
        got = s.get(url + "/datastore/label?label=brain1&tag=final")
        open(os.path.join(tmp, "saved.nii.gz"), "wb").write(got.content)
        saved = nib.load(os.path.join(tmp, "saved.nii.gz"))
        check(saved.shape == ref.shape and np.allclose(saved.affine, ref.affine, atol=1e-3), "saved label on the image grid")
        nxt = s.post(url + "/activelearning/first", json={}).json()
        check(nxt.get("id") == "brain2", "next sample after saving is brain2 (%s)" % nxt)
        check(s.get(url + "/datastore/?output=stats").json()["completed"] == 1, "one image completed")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = -9
        log.close()
        print("server exit code", code)
        if code != 0:
            print(open(os.path.join(tmp, "server.log")).read()[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)
    check(code == 0, "server stopped cleanly on SIGTERM")


if __name__ == "__main__":
    main()
