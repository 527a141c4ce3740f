// Builds the web UI into a folder of static files that `medicosam serve` serves at /ui/:
//   node build.mjs OUT_DIR
// Offline: it only uses web/node_modules (filled by `npm ci` in scripts/install-deps.sh).
import { existsSync, mkdirSync, copyFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error("usage: node build.mjs OUT_DIR");
  process.exit(2);
}
if (!existsSync(join(here, "node_modules", "@niivue", "niivue")) || !existsSync(join(here, "node_modules", "esbuild"))) {
  console.error(`web: ${join(here, "node_modules")} is missing or incomplete: run scripts/install-deps.sh (it runs 'npm ci' in web/)`);
  process.exit(1);
}
const esbuild = await import("esbuild");
// Build into a fresh folder beside OUT and swap it in, so a failed build never leaves a half-written UI.
const tmp = out + ".tmp";
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
await esbuild.build({
  entryPoints: [join(here, "src", "app.js")],
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  outfile: join(tmp, "app.js"),
  logLevel: "warning",
});
for (const f of ["index.html", "style.css"]) copyFileSync(join(here, "src", f), join(tmp, f));
rmSync(out, { recursive: true, force: true });
renameSync(tmp, out);
console.log(`web: built ${out}`);
