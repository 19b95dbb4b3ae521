#!/usr/bin/env node
// Each package's package.json lists exactly the packages (workspace and npm) that its src/ imports: nothing missing,
// nothing extra. The root manifest is bin/'s and bench/'s (workspace packages are the root's own, so it does not list
// them). Reads files only; run by `npm run lint` after dependency-cruiser (.dependency-cruiser.cjs has the other rules).
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { builtinModules } from "node:module"
import { join, resolve } from "node:path"

const ROOT = resolve(import.meta.dirname, "..")
const PACKAGES = {
  cli: ["cli/src"],
  core: ["core/src"],
  events: ["events/src"],
  nodes: ["nodes/src"],
  simulations: ["simulations/src", "simulations/bin"],
  test: ["test/src", "test/e2e"],
  ".": ["bin", "bench"]
}
const SOURCE = /\.(ts|mts|mjs|js|cjs)$/
const SPECIFIER = /(?:\bfrom[ \t]*|\bimport[ \t]*\([ \t]*|\bimport[ \t]+|\brequire[ \t]*\([ \t]*)["']([a-z@][\w@./-]*)["']/g
const builtin = new Set(builtinModules)
// Test tools: the root's devDependencies, shared by every test file (test/e2e included) and never by a src/ file.
const TOOLS = new Set(["vitest", "fast-check"])

const files = (dir) => {
  let out = []
  let entries = []
  try {
    entries = readdirSync(dir)
  } catch {
    return out
  }
  for (const name of entries) {
    const path = join(dir, name)
    if (name === "node_modules") continue
    if (statSync(path).isDirectory()) out = out.concat(files(path))
    else if (SOURCE.test(name)) out.push(path)
  }
  return out
}

const packageOf = (spec) => (spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0])

// `--write`: rewrite each manifest's dependencies to what its sources import (versions from any manifest that pins one).
const WRITE = process.argv.includes("--write")
const manifests = Object.fromEntries(
  Object.keys(PACKAGES).map((dir) => [dir, JSON.parse(readFileSync(join(ROOT, dir, "package.json"), "utf8"))])
)
const versions = new Map(Object.values(manifests).flatMap((m) => Object.entries(m.dependencies ?? {})))

let problems = 0
for (const [dir, roots] of Object.entries(PACKAGES)) {
  const manifest = manifests[dir]
  const listed = new Set(Object.keys(manifest.dependencies ?? {}))
  const used = new Map()
  for (const file of roots.flatMap((r) => files(join(ROOT, r)))) {
    for (const m of readFileSync(file, "utf8").matchAll(SPECIFIER)) {
      const spec = m[1]
      if (spec.startsWith("node:") || builtin.has(spec) || builtin.has(spec.split("/")[0])) continue
      const name = packageOf(spec)
      if (dir === "." && name.startsWith("@missive/")) continue
      if (TOOLS.has(name) && !file.includes("/src/")) continue
      if (!used.has(name)) used.set(name, file.slice(ROOT.length + 1))
    }
  }
  if (WRITE) {
    manifest.dependencies = Object.fromEntries([...used.keys()].sort().map((n) => [n, n.startsWith("@missive/") ? "*" : versions.get(n)]))
    writeFileSync(join(ROOT, dir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`)
    continue
  }
  const label = dir === "." ? "package.json (root: bin/, bench/)" : `${dir}/package.json`
  // The root's dev tools (tsx for bin/bench.mjs) are devDependencies: nothing at run time needs them.
  const dev = new Set(dir === "." ? Object.keys(manifest.devDependencies ?? {}) : [])
  for (const [name, file] of used)
    if (!listed.has(name) && !dev.has(name)) {
      problems++
      console.error(`${label}: ${name} is imported (${file}) but not listed in dependencies`)
    }
  for (const name of listed)
    if (!used.has(name)) {
      problems++
      console.error(`${label}: ${name} is listed in dependencies but nothing in ${roots.join(", ")} imports it`)
    }
}
if (problems > 0) {
  console.error(`manifests: ${problems} problem(s)`)
  process.exit(1)
}
console.log("manifests: every package.json lists exactly what its sources import")
