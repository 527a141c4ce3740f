// Shared pieces of the browser tests: our server, Orthanc and headless chromium,
// each started on a free 127.0.0.1 port with bounded readiness waits, and stopped.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const { chromium } = await import(join(here, "../../web/node_modules/playwright-core/index.mjs"));

const t0 = Date.now();
export const log = (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${m}`);

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function waitExit(child, ms) {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) return r();
    const t = setTimeout(() => { child.kill("SIGKILL"); r(); }, ms);
    child.once("exit", () => { clearTimeout(t); r(); });
  });
}

// `medicosam serve ARGS --port 0`: resolves to {url, stop()} once it prints its URL.
export async function startMedicosam(binary, args, logPath) {
  const server = spawn(binary, ["serve", ...args, "--port", "0", "--host", "127.0.0.1"], { stdio: ["ignore", "pipe", "pipe"] });
  server.stderr.pipe(createWriteStream(logPath));
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("the server did not start within 120 s")), 120000);
    server.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    server.on("exit", (code) => { clearTimeout(timer); reject(new Error(`the server exited (${code}); see ${logPath}`)); });
  });
  return { url, stop: async () => { server.kill("SIGTERM"); await waitExit(server, 10000); } };
}

// Debian's Orthanc with the DICOMweb plugin, own config, storage in DIR; {url, dicomweb, stop()}.
export async function startOrthanc(dir) {
  const binary = "/usr/sbin/Orthanc", plugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";
  for (const f of [binary, plugin]) if (!existsSync(f)) throw new Error(`${f} is missing: run scripts/install-deps.sh`);
  mkdirSync(join(dir, "db"), { recursive: true });
  const port = await freePort();
  writeFileSync(join(dir, "orthanc.json"), JSON.stringify({
    Name: "medicosam-ui-test", StorageDirectory: join(dir, "db"), IndexDirectory: join(dir, "db"), HttpPort: port,
    DicomServerEnabled: false, RemoteAccessAllowed: false, AuthenticationEnabled: false,
    Plugins: [plugin],
    DicomWeb: { Enable: true, Root: "/dicom-web/", EnableWado: true, WadoRoot: "/wado", Host: "localhost", Ssl: false },
  }));
  const child = spawn(binary, ["--logfile=" + join(dir, "orthanc.log"), join(dir, "orthanc.json")], { stdio: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Orthanc exited at start (see ${dir}/orthanc.log)`);
    try {
      if ((await fetch(url + "/system")).ok) break;
    } catch (_) { /* not up yet */ }
    if (Date.now() > deadline) { child.kill("SIGKILL"); throw new Error("Orthanc did not answer within 60 s"); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, dicomweb: url + "/dicom-web", stop: async () => { child.kill("SIGTERM"); await waitExit(child, 10000); } };
}

export async function launchChromium() {
  const executablePath = process.env.MEDICOSAM_CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) throw new Error(`${executablePath} is missing: run scripts/install-deps.sh`);
  return chromium.launch({
    executablePath,
    headless: true,
    // WebGL2 in headless Chromium >= 137 needs SwiftShader asked for explicitly.
    args: ["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--no-sandbox"],
  });
}

// Page helpers shared by the tests (they use the page's debugging handle window.medicosam).
export function pageTools(page, artifacts) {
  const tools = {
    errors: [],
    shot: async (name) => {
      await page.screenshot({ path: join(artifacts, name + ".png") });
      log(`screenshot ${name}.png`);
    },
    // Runs `action` and waits until the page has finished interaction `what`.
    done: async (what, action) => {
      const before = await page.evaluate(() => window.medicosam.state.done?.count ?? 0);
      await action();
      await page.waitForFunction(([w, n]) => {
        const d = window.medicosam.state.done;
        return d && d.count > n && d.what === w;
      }, [what, before], { timeout: 60000 });
      const t = await page.evaluate(() => window.medicosam.state.timings);
      if (t) log(`${what}: ${t.total.toFixed(0)} ms in the page (server ${t.server?.toFixed(0)}, round trip ${t.request.toFixed(0)}, drawing ${t.draw.toFixed(0)})`);
    },
    // Where world position `mm` (RAS) is drawn, in page coordinates.
    toCanvas: (mm) => page.evaluate((mm) => {
      const { nv } = window.medicosam;
      const p = nv.frac2canvasPos(nv.mm2frac(mm));
      if (!p) return null;
      const dpr = nv.uiData.dpr || 1;
      const r = nv.canvas.getBoundingClientRect();
      return [r.left + p[0] / dpr, r.top + p[1] / dpr];
    }, mm),
    // Pixels of the click markers canvas: {green, red}.
    markerPixels: () => page.evaluate(() => {
      const c = document.getElementById("markers");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let green = 0, red = 0;
      for (let o = 0; o < d.length; o += 4) {
        if (d[o + 3] < 200) continue;
        if (d[o + 1] > 150 && d[o] < 100) green++;
        else if (d[o] > 200 && d[o + 1] < 100) red++;
      }
      return { green, red };
    }),
    labelVoxels: () => page.evaluate(() => {
      const img = window.medicosam.state.labels.img;
      let n = 0;
      for (let i = 0; i < img.length; i++) if (img[i]) n++;
      return n;
    }),
  };
  page.on("pageerror", (e) => tools.errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") tools.errors.push(m.text()); });
  return tools;
}
