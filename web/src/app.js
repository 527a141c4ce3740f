// medicosam's web annotation UI. It talks to `medicosam serve` through the
// native session API (/api/, docs/server.md): one lease per page, the image set
// once, every interaction answered with the changed region of the label volume,
// which is pasted into a label overlay drawn by niivue.
//
// Voxel order: the server sends the image (GET /api/image) and the label
// regions on the same grid, index [i,j,k] = file order, i fastest. niivue draws
// volumes in a RAS-permuted grid, so positions on screen are turned into file
// indices through the image's own affine (world mm -> voxel), never through
// niivue's permuted `vox`.
import { Niivue, NVImage, SLICE_TYPE, DRAG_MODE } from "@niivue/niivue";

const $ = (id) => document.getElementById(id);
const LEASE_HEARTBEAT_MS = 30000;

const state = {
  apiKey: localStorage.getItem("medicosam.apiKey") || "",
  token: null,
  models: [],
  image: null,       // datastore id of the open image
  meta: null,        // set_image's answer
  base: null,        // NVImage of the image
  labels: null,      // NVImage of the label overlay (file order, same grid)
  dims: null,        // [nx, ny, nz]
  toVoxel: null,     // 4x4 world mm -> voxel index
  tool: "pos",
  view: "axial",
  objects: [],
  current: null,
  busy: 0,
  dirty: false,      // objects drawn since the last save
  maxLabel: null,    // the label overlay's colour table spans [0, maxLabel]
  lastRequest: null, // for tests and the status line: the last interaction sent
};

// ---------------------------------------------------------------- status line
function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// ---------------------------------------------------------------- HTTP
function authHeaders() {
  const h = {};
  if (state.apiKey) h.Authorization = "Bearer " + state.apiKey;
  if (state.token) h["X-Lease-Token"] = state.token;
  return h;
}

async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = authHeaders();
  let payload = body;
  if (body !== undefined && !(body instanceof FormData) && !(body instanceof Blob)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  // The server wants a Content-Length on every POST/PUT: an empty body is fine.
  if ((method === "POST" || method === "PUT") && payload === undefined) payload = "";
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, "the server does not answer (" + e.message + ")");
  }
  if (res.status === 401) {
    const key = prompt("This server needs its API key:", "");
    if (key !== null) {
      state.apiKey = key.trim();
      localStorage.setItem("medicosam.apiKey", state.apiKey);
      return api(path, { method, body, raw });
    }
  }
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const j = await res.json();
      detail = j.detail || JSON.stringify(j);
    } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, detail);
  }
  if (raw) return res;
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res;
}

// Runs an action with the busy cursor and turns every failure into a message.
async function run(label, fn) {
  state.busy++;
  document.body.classList.add("busy");
  updateButtons();
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError && e.status === 410) {
      status(label + ": the session expired; reopening the image…", true);
      state.token = null;
      state.dirty = false;  // the expired session's objects are gone with it
      if (state.image) await openImage(state.image).catch(() => {});
    } else {
      status(label + " failed: " + e.message, true);
    }
    console.error(label, e);
    return undefined;
  } finally {
    state.busy--;
    if (!state.busy) document.body.classList.remove("busy");
    updateButtons();
  }
}

// ---------------------------------------------------------------- lease
async function ensureLease() {
  if (state.token) return;
  const r = await api("/api/claim", { method: "POST" });
  state.token = r.lease_token;
}

setInterval(() => {
  if (state.token) api("/api/heartbeat", { method: "POST" }).catch(() => {});
}, LEASE_HEARTBEAT_MS);

// The lease is not released when the page goes: a reload (or a crashed tab) resumes the
// same session with its objects (start(); the token is kept per tab in sessionStorage, so
// a second tab gets a session of its own); an abandoned lease expires on the server.
window.addEventListener("beforeunload", (e) => {
  if (!state.dirty) return;
  e.preventDefault();
  e.returnValue = "";  // the browser asks whether to leave with unsaved objects
});

// ---------------------------------------------------------------- viewer
const nv = new Niivue({
  backColor: [0.09, 0.1, 0.12, 1],
  crosshairColor: [0.23, 0.51, 0.96, 0.8],
  crosshairWidth: 1,
  dragAndDropEnabled: false,
  // Radiological convention (patient left on screen right), as PACS viewers and Slicer show axial slices;
  // it also shows 2D photos (identity direction = LPS) the right way round.
  isRadiologicalConvention: true,
  multiplanarForceRender: false,
  show3Dcrosshair: false,
});

// Label colours: object n gets PALETTE[(n - 1) % PALETTE.length]; 0 is transparent.
const PALETTE = [
  [255, 64, 32], [32, 200, 255], [255, 210, 0], [160, 90, 255], [0, 220, 120],
  [255, 110, 200], [255, 150, 40], [90, 140, 255], [200, 255, 80], [0, 180, 170],
];
function colourOf(label) {
  return PALETTE[(label - 1) % PALETTE.length];
}
// niivue draws a label volume right only when its lookup table spans exactly
// the volume's value range [0, M] (measured): so the table is rebuilt, and the
// range set, whenever a larger label value appears.
function recolour(maxLabel) {
  const l = state.labels;
  const m = Math.max(1, maxLabel);
  if (state.maxLabel === m) return;
  state.maxLabel = m;
  const cm = { R: [0], G: [0], B: [0], A: [0], I: [0] };
  for (let v = 1; v <= m; v++) {
    const [r, g, b] = colourOf(v);
    cm.R.push(r); cm.G.push(g); cm.B.push(b); cm.A.push(255); cm.I.push(v);
  }
  l.global_min = l.cal_min = 0;
  l.global_max = l.cal_max = m;
  l.setColormapLabel(cm);
}

function invert4(m) {
  // m: 4x4 as rows; returns the inverse (rows). Gauss-Jordan with pivoting.
  const a = m.map((r, i) => [...r, ...[0, 1, 2, 3].map((j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < 4; c++) {
    let p = c;
    for (let r = c + 1; r < 4; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    if (Math.abs(a[p][c]) < 1e-12) throw new Error("the image's affine is singular");
    [a[c], a[p]] = [a[p], a[c]];
    const d = a[c][c];
    for (let j = 0; j < 8; j++) a[c][j] /= d;
    for (let r = 0; r < 4; r++) {
      if (r === c) continue;
      const f = a[r][c];
      for (let j = 0; j < 8; j++) a[r][j] -= f * a[c][j];
    }
  }
  return a.map((r) => r.slice(4));
}

// Canvas position (CSS pixels) -> file voxel index [i,j,k], or null off the image.
function voxelAt(x, y) {
  if (!state.base) return null;
  const dpr = nv.uiData.dpr || 1;
  const frac = nv.canvasPos2frac([x * dpr, y * dpr]);
  if (!frac || frac[0] < 0) return null;
  return voxelOfMm(nv.frac2mm(frac));
}

function voxelOfMm(mm) {
  const m = state.toVoxel;
  const v = [0, 1, 2].map((r) => Math.round(m[r][0] * mm[0] + m[r][1] * mm[1] + m[r][2] * mm[2] + m[r][3]));
  if (v.some((c, a) => c < 0 || c >= state.dims[a])) return null;
  return v;
}

// ---------------------------------------------------------------- click markers
// The clicks of the object in progress, drawn on a 2D canvas over niivue's:
// green positive, red negative; on the slice they were made on, in any view.
const markers = { list: [], undone: [] };  // entries: {voxel, positive} or null (an interaction without a point)
const markerCanvas = document.createElement("canvas");
markerCanvas.id = "markers";

function mmOfVoxel(v) {
  const a = state.base.hdr.affine;
  return [0, 1, 2].map((r) => a[r][0] * v[0] + a[r][1] * v[1] + a[r][2] * v[2] + a[r][3]);
}

// The file axis closest to world axis w (0 = x: sagittal, 1 = y: coronal, 2 = z: axial).
function fileAxisOf(w) {
  const a = state.base.hdr.affine;
  let best = 0;
  for (let c = 1; c < 3; c++) if (Math.abs(a[w][c]) > Math.abs(a[w][best])) best = c;
  return best;
}

function drawMarkers() {
  const c = markerCanvas, gl = $("gl");
  // Setting the size resets the bitmap (clearRect alone left old markers in headless Chromium).
  c.width = gl.width;
  c.height = gl.height;
  const ctx = c.getContext("2d");
  const points = markers.list.filter((m) => m);
  if (!state.base || !points.length) return;
  const cross = nv.frac2mm(nv.scene.crosshairPos);
  const here = voxelOfMm(cross);
  if (!here) return;
  const planes = state.view === "multi" ? [2, 1, 0] : [{ axial: 2, coronal: 1, sagittal: 0 }[state.view]];
  const r = 5 * (nv.uiData.dpr || 1);
  for (const m of points)
    for (const w of planes) {
      const fa = fileAxisOf(w);
      if (m.voxel[fa] !== here[fa]) continue;  // not on the shown slice
      const mm = mmOfVoxel(m.voxel);
      mm[w] = cross[w];
      const p = nv.frac2canvasPos(nv.mm2frac(mm));
      if (!p) continue;
      ctx.beginPath();
      ctx.arc(p[0], p[1], r, 0, 2 * Math.PI);
      ctx.fillStyle = m.positive ? "#22c55e" : "#ef4444";
      ctx.fill();
      ctx.lineWidth = Math.max(1, r / 3);
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
    }
}

// Keeps the markers in step with the server's history of the object in progress.
function trackMarkers(what, body) {
  if (what === "point") { markers.list.push({ voxel: body.voxel, positive: body.positive }); markers.undone = []; }
  else if (what === "box" || what === "propagate") { markers.list.push(null); markers.undone = []; }
  else if (what === "undo") { if (markers.list.length) markers.undone.push(markers.list.pop()); }
  else if (what === "redo") { if (markers.undone.length) markers.list.push(markers.undone.pop()); }
  else { markers.list = []; markers.undone = []; }  // commit, new object, edit, reset, discard
  drawMarkers();
}

function setView(view) {
  state.view = view;
  const types = { axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL, sagittal: SLICE_TYPE.SAGITTAL, multi: SLICE_TYPE.MULTIPLANAR };
  nv.setSliceType(types[view]);
  document.querySelectorAll("button.view").forEach((b) => b.classList.toggle("on", b.dataset.view === view));
}

function setTool(tool) {
  state.tool = tool;
  for (const t of ["pos", "neg", "box"]) $("tool-" + t).classList.toggle("on", t === tool);
  // Left drag: a box in box mode, else it moves the crosshair; right drag sets the contrast.
  nv.setMouseEventConfig({
    leftButton: { primary: tool === "box" ? DRAG_MODE.callbackOnly : DRAG_MODE.crosshair, withShift: DRAG_MODE.crosshair },
    rightButton: DRAG_MODE.windowing,
    centerButton: DRAG_MODE.pan,
  });
}

// ---------------------------------------------------------------- labels
function applyRegion(reply) {
  if (!reply) return;
  state.current = reply.current ?? state.current;
  const region = reply.region;
  if (!region || !region.bbox || !state.labels) return;
  const bin = atob(region.data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const values = new Uint16Array(bytes.buffer);  // little endian, as every browser platform
  const [[i0, i1], [j0, j1], [k0, k1]] = region.bbox;
  const [nx, ny] = state.dims;
  const img = state.labels.img;
  let n = 0, max = 0;
  for (let k = k0; k < k1; k++)
    for (let j = j0; j < j1; j++) {
      let o = i0 + nx * (j + ny * k);
      for (let i = i0; i < i1; i++) {
        const v = values[n++];
        img[o++] = v;
        if (v > max) max = v;
      }
    }
  if (max > state.maxLabel) {
    recolour(max);
    nv.updateGLVolume();  // new colour table: refresh everything
  } else {
    // Only the label layer changed: re-upload it alone (updateGLVolume would also redo the image).
    nv.refreshLayers(state.labels, 1);
    nv.drawScene();
  }
}

async function refreshObjects() {
  const s = await api("/api/state");
  state.objects = s.objects;
  state.current = s.current;
  const ul = $("objects");
  ul.textContent = "";
  const rows = [...s.objects];
  if (s.current && !rows.some((o) => o.label === s.current.label)) rows.push({ ...s.current, pixels: null });
  for (const o of rows) {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = "rgb(" + colourOf(o.label).join(",") + ")";
    li.append(sw, document.createTextNode(o.name || "object " + o.label));
    const tag = document.createElement("span");
    tag.className = "tag";
    const editing = s.current && s.current.label === o.label;
    tag.textContent = editing ? "editing" : o.pixels + " vx";
    li.append(tag);
    li.classList.toggle("on", editing);
    li.title = editing ? "In progress: click to refine, Done to accept" : "Click to edit this object again";
    if (!editing) li.onclick = () => run("Edit object", () => interact("edit_object", { label: o.label }));
    ul.append(li);
  }
  $("undo").dataset.depth = s.undo_depth;
  $("redo").dataset.depth = s.redo_depth;
  updateButtons();
}

function updateButtons() {
  const open = !!state.base;
  for (const id of ["undo", "redo", "propagate", "commit", "save", "dl-nii", "dl-seg", "tool-pos", "tool-neg", "tool-box"])
    $(id).disabled = !open;
  if (open) {
    $("undo").disabled = $("undo").dataset.depth === "0";
    $("redo").disabled = $("redo").dataset.depth === "0";
    $("propagate").disabled = !state.current || state.dims[2] < 2;
    $("commit").disabled = !state.current;
  }
}

// One interaction: POST, paste the region, refresh the object list.
async function interact(what, body) {
  const t0 = performance.now();
  state.lastRequest = { what, body };
  const reply = await api("/api/" + what, { method: "POST", body });
  const t1 = performance.now();
  applyRegion(reply);
  trackMarkers(what, body);
  const t2 = performance.now();
  state.timings = { total: t2 - t0, request: t1 - t0, server: reply.latency_ms, draw: t2 - t1 };
  status(`${what}: ${(t2 - t0).toFixed(0)} ms (server ${reply.latency_ms?.toFixed?.(0) ?? "?"} ms, ` +
         `round trip ${(t1 - t0).toFixed(0)} ms, drawing ${(t2 - t1).toFixed(0)} ms)`);
  await refreshObjects();
  if (what !== "new_object") state.dirty = true;
  state.done = { what, count: (state.done?.count ?? 0) + 1 };  // interactions finished (tests wait on it)
  return reply;
}

// ---------------------------------------------------------------- images
async function listImages() {
  const ds = await api("/datastore/?output=all");
  const ul = $("images");
  ul.textContent = "";
  const ids = Object.keys(ds.objects || {}).sort();
  for (const id of ids) {
    const li = document.createElement("li");
    const info = ds.objects[id].image?.info || {};
    const name = document.createElement("span");
    name.className = "name";
    // A PACS series: modality, series number and description (the id is its SeriesInstanceUID).
    name.textContent = info.modality
      ? `${info.modality} ${info.series_number ?? ""} ${info.series_description || ""}`.replace(/\s+/g, " ").trim()
      : info.name || id;
    li.append(name);
    li.title = id;
    li.dataset.id = id;
    const labels = Object.keys(ds.objects[id].labels || {});
    if (labels.length || info.labelled_in_pacs) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = labels.includes("final") || info.labelled_in_pacs ? "✓ labelled" : labels.join(",");
      li.append(tag);
    }
    li.classList.toggle("on", id === state.image);
    li.onclick = () => run("Open " + id, () => openImage(id));
    ul.append(li);
  }
  if (!ids.length) ul.innerHTML = "<li class='tag'>(the datastore is empty)</li>";
}

async function openImage(id) {
  // Opening another image ends this one's session: accepted objects not saved would be gone.
  if (state.dirty && state.image &&
      !confirm(`The objects drawn on ${state.image} are not saved. Open ${id} anyway and drop them?`)) return;
  status("Opening " + id + "…");
  await ensureLease();
  const model = $("model").value || undefined;
  const meta = await api("/api/set_image", { method: "POST", body: { image: id, model } });
  await showImage(id, meta);
  state.dirty = false;
}

// Loads the session's image and labels into the viewer (after set_image, or when a
// reloaded page resumes its lease).
async function showImage(id, meta) {
  state.meta = meta;
  state.image = id;
  sessionStorage.setItem("medicosam.lease", JSON.stringify({ token: state.token, image: id }));
  for (const v of [...nv.volumes]) nv.removeVolume(v);
  state.base = state.labels = null;
  const headers = authHeaders();
  const base = await NVImage.loadFromUrl({ url: "/api/image", headers, name: id + ".nii.gz" });
  const labels = await NVImage.loadFromUrl({ url: "/api/labels", headers, name: "labels.nii.gz" });
  const hdr = base.hdr;
  state.dims = [hdr.dims[1], hdr.dims[2], Math.max(1, hdr.dims[3])];
  state.toVoxel = invert4(hdr.affine);
  labels.opacity = 0.5;
  // CT (values in Hounsfield units): start with a soft-tissue window (W 400, L 40); right-drag changes it.
  if (base.global_min < -500 && base.global_max > 500) {
    base.cal_min = -160;
    base.cal_max = 240;
  }
  state.base = base;
  state.labels = labels;
  state.maxLabel = null;
  markers.list = [];
  markers.undone = [];
  recolour(labels.img.reduce((a, v) => (v > a ? v : a), 0));
  nv.addVolume(base);
  nv.addVolume(labels);
  // The first view: the middle of the volume, axial.
  $("empty").hidden = true;
  setView(state.dims[2] > 1 ? state.view : "axial");
  await refreshObjects();
  await listImages();
  watchProgress();
  status(`${id}: ${state.dims.join("×")} voxels, ${state.meta.slices} slice(s) along ${state.meta.axis}`);
}

let progressTimer = null;
function watchProgress() {
  clearTimeout(progressTimer);
  const tick = async () => {
    if (!state.token || !state.image) return;
    try {
      const p = await api("/api/progress");
      const done = p.embedded >= p.slices;
      $("progress-box").hidden = done;
      $("progress").max = p.slices;
      $("progress").value = p.embedded;
      $("progress-text").textContent = `${p.embedded} / ${p.slices} slices ready`;
      if (!done) progressTimer = setTimeout(tick, 700);
    } catch (_) {
      progressTimer = setTimeout(tick, 3000);
    }
  };
  tick();
}

// The slice the user looks at is embedded first.
let sliceTimer = null;
nv.onLocationChange = (loc) => {
  if (!state.base) return;
  const v = voxelOfMm(loc.mm);
  $("location").textContent = v ? `voxel [${v.join(", ")}]  value ${loc.values?.[0]?.value ?? ""}` : "";
  clearTimeout(sliceTimer);
  if (v) sliceTimer = setTimeout(() => api("/api/set_slice", { method: "POST", body: { voxel: v } }).catch(() => {}), 250);
};

// ---------------------------------------------------------------- input
const canvas = $("gl");
let down = null;
canvas.addEventListener("pointerdown", (e) => { down = { x: e.offsetX, y: e.offsetY, button: e.button }; });
canvas.addEventListener("pointerup", (e) => {
  const d = down;
  down = null;
  if (!d || !state.base || state.tool === "box") return;
  if (Math.hypot(e.offsetX - d.x, e.offsetY - d.y) > 3) return;  // a drag, not a click
  if (d.button !== 0 && d.button !== 2) return;
  const voxel = voxelAt(e.offsetX, e.offsetY);
  if (!voxel) return;
  const positive = d.button === 0 && !e.shiftKey && state.tool === "pos";
  run("Point", () => interact("point", { voxel, positive }));
});
canvas.addEventListener("contextmenu", (e) => e.preventDefault());

nv.onDragRelease = (p) => {
  if (state.tool !== "box" || !state.base) return;
  const a = voxelOfMm(p.mmStart);
  const b = voxelOfMm(p.mmEnd);
  if (!a || !b) return status("Box: start and end must be on the image", true);
  const axis = { axial: 2, coronal: 1, sagittal: 0 }[state.meta.axis] ?? 2;
  if (a[axis] !== b[axis]) return status(`Box: draw it on one ${state.meta.axis} slice (the session's plane)`, true);
  if (a.every((c, i) => i === axis || c === b[i])) return;
  run("Box", () => interact("box", { voxels: [a, b] }));
};

document.querySelectorAll("button.view").forEach((b) => (b.onclick = () => setView(b.dataset.view)));
$("tool-pos").onclick = () => setTool("pos");
$("tool-neg").onclick = () => setTool("neg");
$("tool-box").onclick = () => setTool("box");
$("undo").onclick = () => run("Undo", () => interact("undo"));
$("redo").onclick = () => run("Redo", () => interact("redo"));
$("propagate").onclick = () => run("Propagate", async () => {
  status("Propagating through the volume…");
  const threshold = Number($("iou-threshold").value);
  if (!(threshold >= 0 && threshold <= 1)) throw new Error("the IoU threshold must be between 0 and 1");
  const r = await interact("propagate", { projection: $("projection").value, iou_threshold: threshold });
  if (r.z_min !== undefined) status(`Propagated over slices ${r.z_min}–${r.z_max} in ${(r.latency_ms / 1000).toFixed(1)} s`);
});
$("commit").onclick = () => run("Done", () => interact("commit"));
$("new-object").onsubmit = (e) => {
  e.preventDefault();
  const name = $("object-name").value.trim();
  run("New object", async () => {
    await interact("new_object", name ? { name } : {});
    $("object-name").value = "";
    status(`New object${name ? " '" + name + "'" : ""}: click on it`);
  });
};
$("save").onclick = () => run("Save", async () => {
  const r = await api("/api/save", { method: "POST", body: { tag: "final" } });
  state.dirty = false;
  status(`Saved ${r.objects} object(s) of ${r.image} to the datastore`);
  await listImages();
});
async function download(format, filename) {
  const res = await api("/api/export?format=" + format, { raw: true });
  const blob = await res.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  status(`Downloaded ${filename} (${(blob.size / 1024).toFixed(0)} kB)`);
}
$("dl-nii").onclick = () => run("Download", () => download("nii.gz", `${state.image}_labels.nii.gz`));
$("dl-seg").onclick = () => run("Download", () => download("dcm", `${state.image}_seg.dcm`));
$("upload").onchange = (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const id = file.name.replace(/\.(nii\.gz|nii|nrrd|mha|png|jpe?g)$/i, "").replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 100) || "upload";
  run("Upload", async () => {
    status(`Uploading ${file.name}…`);
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("params", "{}");
    await api("/datastore/image?image=" + encodeURIComponent(id), { method: "PUT", body: form });
    await listImages();
    await openImage(id);
  });
  e.target.value = "";
};

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT") return;
  const key = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && key === "z") { e.preventDefault(); if (!$("undo").disabled) $("undo").click(); }
  else if ((e.ctrlKey || e.metaKey) && key === "y") { e.preventDefault(); if (!$("redo").disabled) $("redo").click(); }
  else if (key === "enter" && !$("commit").disabled) $("commit").click();
  else if (key === "p") setTool("pos");
  else if (key === "n") setTool("neg");
  else if (key === "b") setTool("box");
  else if (["1", "2", "3", "4"].includes(key)) setView(["axial", "coronal", "sagittal", "multi"][+key - 1]);
});

// ---------------------------------------------------------------- start
async function start() {
  await nv.attachToCanvas(canvas);
  canvas.after(markerCanvas);
  const drawScene = nv.drawScene.bind(nv);
  nv.drawScene = (...args) => {
    const r = drawScene(...args);
    drawMarkers();
    return r;
  };
  setTool("pos");
  updateButtons();
  const caps = await api("/api/capabilities");
  state.models = caps.models;
  for (const m of caps.models) $("model").append(new Option(m.name, m.name));
  await listImages();
  status(`Connected to medicosam ${caps.version}. Pick an image.`);
  const wanted = new URLSearchParams(location.search).get("image");
  if (wanted) return openImage(wanted);
  // A reloaded page continues its session (objects, undo history) if the lease is still alive.
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem("medicosam.lease") || "null");
  } catch (_) { /* ignore */ }
  if (saved?.token && saved?.image) {
    state.token = saved.token;
    try {
      const s = await api("/api/state");
      if (s.image === saved.image) {
        await showImage(saved.image, { axis: "axial", slices: s.slices });
        state.dirty = s.objects.length > 0 || !!s.current;
        status(`Resumed ${saved.image} where you left it (${s.objects.length} object(s)).`);
        return;
      }
    } catch (_) { /* expired: start afresh */ }
    state.token = null;
    sessionStorage.removeItem("medicosam.lease");
  }
}
run("Start", start);

// A handle for debugging in the console and for the browser tests.
window.medicosam = { nv, state, voxelOfMm, openImage, markers };
