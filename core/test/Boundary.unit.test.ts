// Module boundary of core, next to the Nx tags: core/src imports only fp-ts and itself, and reads no clock and no randomness.
// Reads the sources through the TypeScript parser, so comments and strings that mention `Date.now()` do not count.
import { readdirSync, readFileSync } from "node:fs"
import { builtinModules } from "node:module"
import { dirname, join, relative, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { describe, expect, it } from "vitest"

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../src")

const ALLOWED_PACKAGES = ["fp-ts"]
const BUILTINS = new Set(builtinModules.flatMap((m) => [m, m.replace(/^node:/, "")]))

/** Globals whose reading makes replay inexact or does I/O: `receiver.member` calls and bare identifiers. */
const FORBIDDEN_CALLS: ReadonlyArray<readonly [string, string]> = [
  ["Date", "now"],
  ["Math", "random"],
  ["performance", "now"],
  ["crypto", "randomUUID"],
  ["crypto", "getRandomValues"],
  ["process", "hrtime"]
]
const FORBIDDEN_GLOBALS = new Set(["process", "setTimeout", "setInterval", "setImmediate", "fetch", "require"])

interface Violation {
  readonly line: number
  readonly what: string
}

const specifierProblem = (spec: string, file: string): string | undefined => {
  if (spec.startsWith("./") || spec.startsWith("../")) {
    const target = resolve(dirname(file), spec)
    return target === SRC || target.startsWith(SRC + sep) ? undefined : `relative import leaves core/src: "${spec}"`
  }
  if (spec.startsWith("node:") || BUILTINS.has(spec) || BUILTINS.has(spec.split("/")[0] ?? "")) return `Node builtin "${spec}"`
  const pkg = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] ?? spec)
  return ALLOWED_PACKAGES.includes(pkg) ? undefined : `package "${spec}" (only ${ALLOWED_PACKAGES.join(", ")} and relative paths)`
}

/** Every boundary violation in one source text. */
const violations = (text: string, file = join(SRC, "Probe.ts")): ReadonlyArray<Violation> => {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const out: Array<Violation> = []
  const at = (node: ts.Node, what: string) => out.push({ line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, what })
  const checkSpecifier = (node: ts.Node, spec: ts.Expression | undefined) => {
    if (spec === undefined) return
    if (!ts.isStringLiteralLike(spec)) return at(node, "import with a computed specifier")
    const problem = specifierProblem(spec.text, file)
    if (problem) at(node, problem)
  }
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) checkSpecifier(node, node.moduleSpecifier)
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference))
      checkSpecifier(node, node.moduleReference.expression)
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) checkSpecifier(node, node.argument.literal as ts.Expression)
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) checkSpecifier(node, node.arguments[0])
    else if (
      ts.isNewExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === "Date" &&
      (node.arguments?.length ?? 0) === 0
    )
      at(node, "new Date() without an argument reads the clock")
    else if (ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression)) {
      const receiver = node.expression.text
      const name = node.name.text
      const hit = FORBIDDEN_CALLS.find(([r, m]) => r === receiver && m === name)
      if (hit) at(node, `${receiver}.${name} reads the clock or randomness`)
    }
    if (ts.isIdentifier(node) && FORBIDDEN_GLOBALS.has(node.text) && !isDeclarationName(node) && !isMemberName(node))
      at(node, `global ${node.text}`)
    ts.forEachChild(node, visit)
  }
  visit(source)
  return out
}

const isMemberName = (node: ts.Identifier): boolean =>
  (ts.isPropertyAccessExpression(node.parent) && node.parent.name === node) ||
  (ts.isPropertyAssignment(node.parent) && node.parent.name === node) ||
  (ts.isPropertySignature(node.parent) && node.parent.name === node)

const isDeclarationName = (node: ts.Identifier): boolean => {
  const p = node.parent as ts.Node & { name?: ts.Node }
  return p.name === node && (ts.isVariableDeclaration(p) || ts.isParameter(p) || ts.isFunctionDeclaration(p) || ts.isBindingElement(p))
}

const filesUnder = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]))

describe("core module boundary", () => {
  const files = filesUnder(SRC)

  it("finds the core sources", () => {
    const names = files.map((f) => relative(SRC, f))
    for (const n of ["index.ts", "Message.ts", "Policy.ts", "Reply.ts", "Route.ts", "Dsn.ts"]) expect(names).toContain(n)
  })

  it("every file under core/src is TypeScript", () => {
    for (const f of files) expect(relative(SRC, f)).toMatch(/\.ts$/)
  })

  it.each(filesUnder(SRC).map((f) => [relative(SRC, f), f] as const))(
    "%s imports only fp-ts and core, reads no clock nor randomness",
    (_name, file) => {
      expect(violations(readFileSync(file, "utf8"), file)).toEqual([])
    }
  )
})

describe("the boundary checker itself", () => {
  const flagged = (text: string) => violations(text).map((v) => v.what)

  it("allows fp-ts, relative paths inside core/src, and new Date(ms)", () => {
    expect(
      flagged(`
      import * as E from "fp-ts/lib/Either.js"
      import { pipe } from "fp-ts"
      import type { Reply } from "./Reply.js"
      export * as Message from "./Message.js"
      export { x } from "./internal/x.js"
      const d = (ms: number) => new Date(ms).toUTCString()
      // Date.now() and Math.random() in a comment, "new Date()" in a string: no call
      const s = "Date.now()"
      const o = { process: 1, now: 2 }
      const t = o.process
    `)
    ).toEqual([])
  })

  it.each([
    [`import { Effect } from "effect"`, "package"],
    [`import type { Layer } from "effect/Layer"`, "package"],
    [`import * as fs from "fs"`, "Node builtin"],
    [`import { promises } from "node:dns"`, "Node builtin"],
    [`import net from "net"`, "Node builtin"],
    [`import { createHash } from "crypto"`, "Node builtin"],
    [`import "fs/promises"`, "Node builtin"],
    [`export { readFile } from "node:fs/promises"`, "Node builtin"],
    [`const m = await import("node:net")`, "Node builtin"],
    [`import x = require("os")`, "Node builtin"],
    [`type S = import("effect").Scope`, "package"],
    [`import { ulid } from "ulid"`, "package"],
    [`import { Store } from "@missive/events"`, "package"],
    [`import { Store } from "../../events/src/EventStore.js"`, "leaves core/src"],
    [`const now = Date.now()`, "Date.now"],
    [`const d = new Date()`, "new Date()"],
    [`const d = new Date`, "new Date()"],
    [`const r = Math.random()`, "Math.random"],
    [`const t = performance.now()`, "performance.now"],
    [`const id = crypto.randomUUID()`, "crypto.randomUUID"],
    [`const home = process.env.HOME`, "global process"],
    [`setTimeout(() => 0, 10)`, "global setTimeout"]
  ])("flags %s", (text, what) => {
    const found = flagged(text)
    expect(found.length).toBeGreaterThan(0)
    expect(found.join("; ")).toContain(what)
  })
})
