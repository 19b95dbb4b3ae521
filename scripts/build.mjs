#!/usr/bin/env node
// `npm run build` (and `prepare`, so `npm ci` leaves a runnable `npx missive`): compiles each package's src/ to its
// dist/ with one `tsc -b tsconfig.build.json` (project references core → events → nodes → simulations → cli;
// incremental, so a build with nothing changed costs a second), then copies what tsc does not emit: the plain
// JavaScript modules of src/ (events/src/internal/SqliteWorker.mjs and SqliteWriter.mjs, with their .d.mts).
// At run time `@missive/*` resolves through each package.json's "default" export to dist/; typecheck and vitest ask
// for the "source" condition and get src/.
import { spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, readdirSync, statSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative, resolve } from "node:path"

const ROOT = resolve(import.meta.dirname, "..")
const PACKAGES = ["core", "events", "nodes", "simulations", "cli"]

const tsc = createRequire(join(ROOT, "package.json")).resolve("typescript/bin/tsc")
const r = spawnSync(process.execPath, [tsc, "-b", join(ROOT, "tsconfig.build.json"), ...process.argv.slice(2)], { stdio: "inherit" })

const walk = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? walk(path) : [path]
  })
let copied = 0
for (const p of PACKAGES) {
  const src = join(ROOT, p, "src")
  for (const file of walk(src)) {
    if (/\.(ts|tsx)$/.test(file) && !file.endsWith(".d.mts")) continue
    const to = join(ROOT, p, "dist", relative(src, file))
    mkdirSync(dirname(to), { recursive: true })
    copyFileSync(file, to)
    copied++
  }
}
// tsc emits JavaScript even when a type is wrong (and says so); the plain files are copied either way.
if (r.status !== 0) {
  console.error(`build: tsc -b failed (exit ${r.status ?? r.signal})`)
  process.exit(r.status ?? 1)
}
if (process.env["MISSIVE_BUILD_QUIET"] !== "1")
  console.log(`build: ${PACKAGES.map((p) => `${p}/dist`).join(", ")} (+${copied} plain JS file${copied === 1 ? "" : "s"})`)
