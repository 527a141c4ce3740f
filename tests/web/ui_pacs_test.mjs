// The web UI on a PACS: Debian's Orthanc (own config, free port, temporary
// storage) holds a CT series; `medicosam serve --studies` lists it; in headless
// chromium a person opens the series, clicks, accepts, saves, and downloads the
// DICOM SEG. Orthanc's own QIDO-RS must then show a SEG that references the series.
//
//   node tests/web/ui_pacs_test.mjs MEDICOSAM WEB_DIR SHARED_DIR ARTIFACT_DIR
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { log, startMedicosam, startOrthanc, launchChromium, pageTools } from "./common.mjs";

const [medicosam, webDir, sharedDir, artifacts] = process.argv.slice(2);
if (!artifacts) {
  console.error("usage: node ui_pacs_test.mjs MEDICOSAM WEB_DIR SHARED_DIR ARTIFACT_DIR");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "medicosam-ui-pacs-"));
const qido = async (pacs, path) => {
  const r = await fetch(pacs.dicomweb + path, { headers: { Accept: "application/dicom+json" } });
  assert.equal(r.status, 200, `QIDO ${path}`);
  const text = await r.text();
  return text ? JSON.parse(text) : [];
};
const tag = (obj, t) => obj[t]?.Value?.[0];

let pacs, server, browser, page;
let failed = false;
try {
  pacs = await startOrthanc(join(work, "orthanc"));
  const dicomDir = join(sharedDir, "data/ct_dicom_seg_dcmqi/ct_dicom");
  for (const f of readdirSync(dicomDir).filter((f) => f.endsWith(".dcm"))) {
    const r = await fetch(pacs.url + "/instances", { method: "POST", body: readFileSync(join(dicomDir, f)) });
    assert.equal(r.status, 200, `Orthanc took ${f}`);
  }
  const series = await qido(pacs, "/series?Modality=CT");
  assert.equal(series.length, 1);
  const uid = tag(series[0], "0020000E");
  log(`Orthanc at ${pacs.url} holds CT series ${uid}`);

  server = await startMedicosam(medicosam, ["--studies", pacs.dicomweb, "--state-dir", join(work, "state"),
                                            "--web-dir", webDir, "--threads", "2"], join(artifacts, "server-pacs.log"));
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const { shot, done, labelVoxels, errors } = pageTools(page, artifacts);

  await page.goto(server.url + "/");
  const item = `#images li[data-id="${uid}"]`;
  await page.waitForSelector(item, { timeout: 60000 });
  await page.click(item);
  await page.waitForFunction(() => window.medicosam.state.labels && document.querySelector("#progress-box").hidden &&
                             /voxels/.test(document.querySelector("#status").textContent), null, { timeout: 180000 });
  await shot("pacs-1-opened");

  // A click in the middle of the slice, accept, save: the label goes to the PACS as a SEG.
  const mid = await page.evaluate(() => {
    const r = window.medicosam.nv.canvas.getBoundingClientRect();
    return [r.left + r.width / 2, r.top + r.height / 2];
  });
  await done("point", () => page.mouse.click(mid[0], mid[1]));
  assert.ok(await labelVoxels() > 0, "the click gives a mask");
  await done("commit", () => page.click("#commit"));
  await page.click("#save");
  await page.waitForFunction(() => /^Saved|failed/.test(document.querySelector("#status").textContent), null, { timeout: 60000 });
  const saved = await page.textContent("#status");
  log(`save: ${saved}`);
  assert.match(saved, /^Saved 1 object/);
  await page.waitForSelector(`${item} .tag`, { timeout: 60000 });
  assert.match(await page.textContent(`${item} .tag`), /labelled/);
  await shot("pacs-2-saved");

  // Orthanc's own QIDO: a SEG that references the CT series.
  const segs = await qido(pacs, "/series?Modality=SEG");
  assert.equal(segs.length, 1, "one SEG series in the PACS");
  const segStudy = tag(segs[0], "0020000D"), segSeries = tag(segs[0], "0020000E");
  const meta = await (await fetch(`${pacs.dicomweb}/studies/${segStudy}/series/${segSeries}/metadata`,
                                  { headers: { Accept: "application/dicom+json" } })).json();
  const referenced = tag(tag(meta[0], "00081115") ?? {}, "0020000E");
  assert.equal(referenced, uid, "the SEG references the series it was drawn on");
  log(`the PACS holds SEG ${segSeries}, referencing ${referenced}`);

  // Download the DICOM SEG from the page.
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#dl-seg")]);
  const seg = readFileSync(await dl.path());
  assert.equal(seg.subarray(128, 132).toString("latin1"), "DICM", "the download is a DICOM file");
  log(`downloaded ${dl.suggestedFilename()} (${seg.length} bytes)`);
  assert.deepEqual(errors, [], "no errors in the page");
  log("all steps passed");
} catch (e) {
  failed = true;
  console.error(e);
  if (page) await page.screenshot({ path: join(artifacts, "pacs-failure.png") }).catch(() => {});
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.stop();
  if (pacs) await pacs.stop();
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
