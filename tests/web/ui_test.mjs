// The web UI in a real browser (Debian's chromium, headless, driven by
// playwright-core) against a `medicosam serve` started here on a free port with
// a temporary datastore holding the brain MRI (NRRD, LPS, y axis flipped: the
// case where niivue's RAS-permuted grid differs from the file's voxel order).
//
//   node tests/web/ui_test.mjs MEDICOSAM_BINARY WEB_DIR SHARED_DIR ARTIFACT_DIR
//
// Steps: open the image from the list, click the tumour, check the voxel the
// server received against the voxel computed here from the NRRD header, check
// that the overlay is drawn where the label voxels are, undo, redo, box,
// accept, save, and check the datastore. Screenshots of each step go to
// ARTIFACT_DIR (look at them).
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, copyFileSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { log, startMedicosam, launchChromium, pageTools } from "./common.mjs";

const [medicosam, webDir, sharedDir, artifacts] = process.argv.slice(2);
if (!artifacts) {
  console.error("usage: node ui_test.mjs MEDICOSAM WEB_DIR SHARED_DIR ARTIFACT_DIR");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

// ------------------------------------------------------------------ the case
// NRRD: text header, blank line, data (raw or gzip). Returns {sizes, dirs, origin, data}.
function readNrrd(path) {
  const buf = readFileSync(path);
  const end = buf.indexOf("\n\n");
  const header = buf.subarray(0, end).toString("latin1");
  const field = (k) => header.match(new RegExp("^" + k + ":\\s*(.*)$", "m"))?.[1];
  const sizes = field("sizes").trim().split(/\s+/).map(Number);
  const vecs = (s) => [...s.matchAll(/\(([^)]*)\)/g)].map((m) => m[1].split(",").map(Number));
  const dirs = vecs(field("space directions"));
  const origin = vecs(field("space origin"))[0];
  assert.equal(field("space"), "left-posterior-superior");
  assert.equal(field("type"), "int");
  let body = buf.subarray(end + 2);
  if (field("encoding") === "gzip") body = gunzipSync(body);
  const data = new Int32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length));
  return { sizes, dirs, origin, data };
}
const case1 = join(sharedDir, "data/mri_tumor_3d_pyradiomics/nrrd");
const label = readNrrd(join(case1, "brain1_label.nrrd"));
const [nx, ny, nz] = label.sizes;
// The slice with the most tumour, and the tumour voxel nearest its centroid.
const perSlice = new Array(nz).fill(0);
for (let k = 0; k < nz; k++) for (let o = k * nx * ny; o < (k + 1) * nx * ny; o++) if (label.data[o]) perSlice[k]++;
const kT = perSlice.indexOf(Math.max(...perSlice));
let ci = 0, cj = 0, cn = 0;
for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) if (label.data[i + nx * (j + ny * kT)]) { ci += i; cj += j; cn++; }
ci /= cn; cj /= cn;
let target = null, best = Infinity;
for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) {
  if (!label.data[i + nx * (j + ny * kT)]) continue;
  const d = (i - ci) ** 2 + (j - cj) ** 2;
  if (d < best) { best = d; target = [i, j, kT]; }
}
// The tumour's box on that slice [i0, j0, i1, j1].
const tumourBox = [nx, ny, -1, -1];
for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) if (label.data[i + nx * (j + ny * kT)]) {
  tumourBox[0] = Math.min(tumourBox[0], i); tumourBox[1] = Math.min(tumourBox[1], j);
  tumourBox[2] = Math.max(tumourBox[2], i); tumourBox[3] = Math.max(tumourBox[3], j);
}
// World position of the target voxel's centre: LPS from the header, then RAS (niivue's world).
const lps = [0, 1, 2].map((r) => label.origin[r] + target.reduce((s, v, a) => s + label.dirs[a][r] * v, 0));
const targetRas = [-lps[0], -lps[1], lps[2]];
log(`target voxel ${JSON.stringify(target)} (slice with ${perSlice[kT]} tumour voxels), RAS mm ${targetRas.map((v) => v.toFixed(2))}`);

// ------------------------------------------------------------------ the server
const datastore = mkdtempSync(join(tmpdir(), "medicosam-ui-"));
copyFileSync(join(case1, "brain1_image.nrrd"), join(datastore, "brain1.nrrd"));
const server = await startMedicosam(medicosam, ["--datastore", datastore, "--web-dir", webDir, "--threads", "2"],
                                   join(artifacts, "server.log"));
const url = server.url;
log(`server at ${url}`);

let browser, page;
let failed = false;
try {
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const { shot, done, toCanvas, labelVoxels, markerPixels, errors: pageErrors } = pageTools(page, artifacts);
  const setCrosshair = (mm) => page.evaluate((mm) => {
    const { nv } = window.medicosam;
    nv.scene.crosshairPos = nv.mm2frac(mm);
    nv.drawScene();
  }, mm);

  // Counts canvas pixels in the colour of object 1 (orange-red over grey), and
  // whether the pixel where `mm` is drawn has that colour.
  const overlay = (mm) => page.evaluate((mm) => {
    const { nv } = window.medicosam;
    nv.drawScene();
    const gl = nv.gl;
    const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
    const px = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    const isMask = (o) => px[o] - px[o + 2] > 60 && px[o] - px[o + 1] > 40;
    let n = 0;
    for (let o = 0; o < px.length; o += 4) if (isMask(o)) n++;
    let at = null;
    if (mm) {
      const p = nv.frac2canvasPos(nv.mm2frac(mm));
      if (p) at = isMask(4 * (Math.round(p[0]) + w * (h - 1 - Math.round(p[1]))));
    }
    return { n, at };
  }, mm);
  // 1. Open the page and the image, as a person would.
  await page.goto(url + "/");
  await page.waitForSelector("#images li[data-id=brain1]", { timeout: 30000 });
  await shot("1-start");
  await page.click("#images li[data-id=brain1]");
  await page.waitForFunction(() => window.medicosam.state.labels && document.querySelector("#status").textContent.startsWith("brain1:"), null, { timeout: 60000 });
  const dims = await page.evaluate(() => window.medicosam.state.dims);
  assert.deepEqual(dims, [nx, ny, nz], "the image the page shows has the file's size");
  // Go to the tumour's slice (the crosshair sets it) and wait for the embeddings.
  await setCrosshair(targetRas);
  const canvasPos = await toCanvas(targetRas);
  await page.waitForFunction(() => document.querySelector("#progress-box").hidden, null, { timeout: 300000 });
  await shot("2-opened");
  assert.equal((await overlay()).n, 0, "no overlay before the first click");

  // 2. Click the tumour: the server must receive the target voxel.
  const req = page.waitForRequest((r) => r.url().endsWith("/api/point") && r.method() === "POST");
  const resp = page.waitForResponse((r) => r.url().endsWith("/api/point"));
  const tClick = Date.now();
  await page.mouse.click(canvasPos[0], canvasPos[1]);
  const sent = JSON.parse((await req).postData());
  assert.deepEqual(sent, { voxel: target, positive: true }, "the click reached the server at the file's voxel");
  assert.equal((await resp).status(), 200);
  await page.waitForFunction(() => {
    const img = window.medicosam.state.labels.img;
    for (let i = 0; i < img.length; i++) if (img[i]) return true;
    return false;
  }, null, { timeout: 60000 });
  log(`click -> overlay in ${Date.now() - tClick} ms (status: ${await page.textContent("#status")})`);
  const nLabel = await labelVoxels();
  // The page's label volume must equal what the server shows (GET /api/labels, NIfTI).
  const cmp = await page.evaluate(async () => {
    const { state } = window.medicosam;
    const r = await fetch("/api/labels", { headers: { "X-Lease-Token": state.token } });
    const ab = await new Response(r.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
    const dv = new DataView(ab);
    const type = dv.getInt16(70, true), offset = dv.getFloat32(108, true);
    const n = state.labels.img.length;
    const server = type === 2 ? new Uint8Array(ab, offset, n) : type === 512 ? new Uint16Array(ab.slice(offset, offset + 2 * n)) : null;
    if (!server) return { error: "unexpected NIfTI datatype " + type };
    let differ = 0, nonzero = 0;
    for (let i = 0; i < n; i++) { if (server[i] !== state.labels.img[i]) differ++; if (server[i]) nonzero++; }
    return { differ, nonzero };
  });
  log(`mask: ${nLabel} voxels in the page; server labels: ${JSON.stringify(cmp)}`);
  assert.deepEqual(cmp, { differ: 0, nonzero: nLabel }, "the page's label volume equals the server's, voxel for voxel");
  // The overlay is drawn, and where the label voxels are: pick a label voxel
  // well inside the mask on the shown slice and look at its pixel.
  const inside = await page.evaluate((k) => {
    const { state } = window.medicosam;
    const [nx, ny] = state.dims;
    const img = state.labels.img;
    const on = (i, j) => i >= 0 && j >= 0 && i < nx && j < ny && img[i + nx * (j + ny * k)] > 0;
    for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) {
      let all = true;
      for (let dj = -2; dj <= 2 && all; dj++) for (let di = -2; di <= 2 && all; di++) all = on(i + di, j + dj);
      if (all) {
        const a = state.base.hdr.affine;
        return [0, 1, 2].map((r) => a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3]);
      }
    }
    return null;
  }, target[2]);
  assert.ok(inside, "the mask has an interior on the clicked slice");
  const drawn = await overlay(inside);
  log(`overlay: ${drawn.n} canvas pixels in the mask colour; interior voxel drawn in it: ${drawn.at}`);
  assert.ok(drawn.n > 20, "the overlay is drawn");
  assert.equal(drawn.at, true, "the overlay is drawn at the label voxels (voxel order right)");
  const mk = await markerPixels();
  assert.ok(mk.green > 20 && mk.red === 0, `a green marker shows the positive click: ${JSON.stringify(mk)}`);
  await shot("3-click");

  // 3. Undo removes it, redo brings it back.
  await done("undo", () => page.click("#undo"));
  assert.equal(await labelVoxels(), 0, "undo empties the label volume");
  assert.equal((await overlay()).n, 0, "undo removes the overlay");
  assert.equal((await markerPixels()).green, 0, "undo removes the marker");
  await shot("4-undo");
  await done("redo", () => page.click("#redo"));
  assert.equal(await labelVoxels(), nLabel, "redo restores the mask");

  // 3b. The same voxel clicked in the coronal view (another RAS permutation) reaches the server unchanged.
  await page.click("button[data-view=coronal]");
  await setCrosshair(targetRas);
  const coronalPos = await toCanvas(targetRas);
  await page.click("#tool-neg");
  const negReq = page.waitForRequest((r) => r.url().endsWith("/api/point"));
  await done("point", () => page.mouse.click(coronalPos[0], coronalPos[1]));
  assert.deepEqual(JSON.parse((await negReq).postData()), { voxel: target, positive: false }, "a coronal click maps to the same voxel");
  assert.ok((await markerPixels()).red > 20, "a red marker shows the negative click in the coronal view");
  await shot("4b-coronal");
  await done("undo", () => page.click("#undo"));
  assert.equal(await labelVoxels(), nLabel, "undoing the negative click restores the mask");
  await page.click("button[data-view=axial]");
  // Start the object over from a box alone: undo the first click too.
  await done("undo", () => page.click("#undo"));
  assert.equal(await labelVoxels(), 0);

  // 4. A box around the tumour on the same slice (drag in box mode), as a person would draw it.
  await page.click("#tool-box");
  const corner = (i, j) => {
    const p = [0, 1, 2].map((r) => label.origin[r] + label.dirs[0][r] * i + label.dirs[1][r] * j + label.dirs[2][r] * kT);
    return [-p[0], -p[1], p[2]];
  };
  const boxStart = await toCanvas(corner(tumourBox[0] - 3, tumourBox[1] - 3));
  const boxEnd = await toCanvas(corner(tumourBox[2] + 3, tumourBox[3] + 3));
  const boxReq = page.waitForRequest((r) => r.url().endsWith("/api/box"));
  await done("box", async () => {
    await page.mouse.move(boxStart[0], boxStart[1]);
    await page.mouse.down();
    await page.mouse.move((boxStart[0] + boxEnd[0]) / 2, (boxStart[1] + boxEnd[1]) / 2, { steps: 4 });
    await page.mouse.move(boxEnd[0], boxEnd[1], { steps: 4 });
    await page.mouse.up();
  });
  const box = JSON.parse((await boxReq).postData());
  assert.equal(box.voxels[0][2], target[2], "the box lies on the shown slice");
  assert.equal(box.voxels[1][2], target[2]);
  for (const a of [0, 1]) {
    const lo = Math.min(box.voxels[0][a], box.voxels[1][a]), hi = Math.max(box.voxels[0][a], box.voxels[1][a]);
    assert.ok(lo < target[a] && target[a] < hi, `the box surrounds the target on axis ${a}: ${JSON.stringify(box.voxels)}`);
  }
  await shot("5-box");
  // Propagation fills other slices (the box projection: the default model's single point stops at once on this MRI).
  await page.selectOption("#projection", "box");
  const propReq = page.waitForRequest((r) => r.url().endsWith("/api/propagate"));
  await page.click("#propagate");
  assert.deepEqual(JSON.parse((await propReq).postData()), { projection: "box", iou_threshold: 0.5 });
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("Propagated"), null, { timeout: 120000 });
  const slices = await page.evaluate(() => {
    const { state } = window.medicosam;
    const [nx, ny, nz] = state.dims;
    const img = state.labels.img;
    const ks = new Set();
    for (let o = 0; o < img.length; o++) if (img[o]) ks.add(Math.floor(o / (nx * ny)));
    return [...ks].sort((a, b) => a - b);
  });
  log(`propagated: labels on slices ${slices.join(",")} (${await page.textContent("#status")})`);
  assert.ok(slices.length > 1 && slices.includes(target[2]), "propagation labels more than the clicked slice");
  await page.click("button[data-view=multi]");
  await shot("5b-propagated");
  await page.click("button[data-view=axial]");
  await done("commit", () => page.click("#commit"));

  // 5. Save: the label is in the datastore.
  await page.click("#save");
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("Saved"), null, { timeout: 60000 });
  assert.ok(existsSync(join(datastore, "labels/final/brain1.nii.gz")), "save wrote labels/final/brain1.nii.gz");
  await page.waitForSelector("#images li[data-id=brain1] .tag", { timeout: 60000 });
  assert.match(await page.textContent("#images li[data-id=brain1] .tag"), /labelled/);
  await shot("6-saved");
  // Download NIfTI: a gzip'd NIfTI-1 on the image's grid.
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#dl-nii")]);
  const nii = gunzipSync(readFileSync(await dl.path()));
  assert.equal(nii.readInt32LE(0), 348, "the download is NIfTI-1");
  assert.deepEqual([1, 2, 3].map((d) => nii.readInt16LE(40 + 2 * d)), [nx, ny, nz], "on the image's grid");
  log(`downloaded ${dl.suggestedFilename()} (${nii.length} bytes uncompressed)`);
  assert.deepEqual(pageErrors, [], "no errors in the page so far");
  // DICOM SEG of an NRRD image: a clear message, no crash.
  await page.click("#dl-seg");
  await page.waitForFunction(() => document.querySelector("#status").className === "error", null, { timeout: 60000 });
  const segError = await page.textContent("#status");
  log(`DICOM SEG of an NRRD image: "${segError}"`);
  assert.match(segError, /DICOM/);
  pageErrors.length = 0;  // the 4xx of that request is logged by the browser console on purpose

  // 6. A second, named object gets its own colour.
  await page.click("#tool-pos");
  await page.fill("#object-name", "ventricle");
  await page.click("#new-object button");
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("New object"), null, { timeout: 60000 });
  const other = await toCanvas([targetRas[0] + 40, targetRas[1] + 10, targetRas[2]]);
  await done("point", () => page.mouse.click(other[0], other[1]));
  const names = await page.$$eval("#objects li", (lis) => lis.map((li) => li.textContent));
  log(`objects: ${JSON.stringify(names)}`);
  assert.equal(names.length, 2);
  assert.match(names[1], /ventricle/);
  await shot("7-two-objects");

  // 6b. A reload (or a crashed tab) continues the same session: objects and the one in progress come back.
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(d.type()); d.accept().catch(() => {}); });
  const beforeReload = await labelVoxels();
  await page.reload();
  await page.waitForFunction(() => /^Resumed brain1/.test(document.querySelector("#status")?.textContent || ""), null, { timeout: 60000 });
  assert.equal(await labelVoxels(), beforeReload, "the resumed page shows the same labels");
  assert.equal((await page.$$("#objects li")).length, 2, "both objects are back");
  log(`reload resumed the session (${beforeReload} label voxels; dialogs: ${dialogs.join(",")})`);
  await page.click("#tool-pos");

  // 7. Upload a 2D JPEG (an RGB ultrasound image) and segment it.
  await page.setInputFiles("#upload", join(sharedDir, "data/busi/images/benign_001.jpg"));
  await page.waitForFunction(() => /^benign_001: \d+×\d+×1 /.test(document.querySelector("#status").textContent), null, { timeout: 120000 });
  assert.ok(existsSync(join(datastore, "benign_001.jpg")), "the upload is in the datastore");
  assert.ok(dialogs.includes("confirm"), "opening another image with unsaved objects asks first");
  await page.waitForFunction(() => document.querySelector("#progress-box").hidden, null, { timeout: 120000 });
  const mid = await page.evaluate(() => {
    const r = window.medicosam.nv.canvas.getBoundingClientRect();
    return [r.left + r.width / 2, r.top + r.height / 2];
  });
  await done("point", () => page.mouse.click(mid[0], mid[1]));
  assert.ok(await labelVoxels() > 0, "a click on the 2D image gives a mask");
  await shot("8-jpeg");
  assert.deepEqual(pageErrors, [], "no errors in the page");
  log("all steps passed");
} catch (e) {
  failed = true;
  console.error(e);
  if (page) await page.screenshot({ path: join(artifacts, "failure.png") }).catch(() => {});
} finally {
  if (browser) await browser.close().catch(() => {});
  await server.stop();
  rmSync(datastore, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
