// Vitest global setup: the processes tests spawn (bin/missive.mjs, simulations/bin/sim-node.mjs) run the compiled
// dist/ of each package, so bring it up to date from src/ before any test runs: `npm run build`, incremental (about a
// second when nothing changed). One build at a time across concurrent vitest runs (a lock directory). A type error
// does not stop the tests (tsc still emits; the typecheck tier reports it); a build that leaves no cli/dist does.
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, rmSync, statSync } from "node:fs"
import { join, resolve } from "node:path"

const ROOT = resolve(import.meta.dirname, "../..")

export default async function setup(): Promise<void> {
  // The unit tier (`vitest run … unit.test.ts`) spawns nothing.
  if (process.argv.includes("unit.test.ts")) return
  const lock = join(ROOT, "node_modules", ".missive-build.lock")
  for (let i = 0; ; i++) {
    try {
      mkdirSync(lock)
      break
    } catch {
      // Another run is building; a lock older than 5 minutes is left over from a killed run.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true })
      } catch {
        /* gone */
      }
      if (i > 3000) throw new Error(`build lock ${lock} held for 5 minutes`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  try {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts/build.mjs")], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, MISSIVE_BUILD_QUIET: "1" }
    })
    if (r.status !== 0) {
      if (!existsSync(join(ROOT, "cli/dist/index.js")))
        throw new Error(`npm run build failed and left no cli/dist:\n${r.stdout}${r.stderr}`)
      process.stderr.write(
        `build: tsc reported errors (tests run on what it emitted):\n${(r.stdout + r.stderr).split("\n").slice(0, 10).join("\n")}\n`
      )
    }
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}
