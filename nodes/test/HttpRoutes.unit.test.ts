// The routing table and the OpenAPI document describe the same API: every route is documented with the scope it
// needs (public routes without security), and every documented operation has its route. Token hashing and scopes.
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import * as Config from "../src/config/Config.js"
import type { Deps } from "../src/http/Deps.js"
import { OPENAPI, routes } from "../src/http/Routes.js"
import * as Tokens from "../src/http/Tokens.js"

describe("the HTTP API's routing table", () => {
  it("matches nodes/openapi.json, path for path, method for method, scope for scope", () => {
    const table = routes({ config: Config.defaults } as unknown as Deps)
    const doc = JSON.parse(readFileSync(OPENAPI, "utf8")) as {
      paths: Record<string, Record<string, { security: Array<{ bearer: Array<string> }> }>>
    }
    const fromTable = table.map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")} ${r.need}`).sort()
    const fromDoc = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.entries(ops).map(([m, op]) => `${m.toUpperCase()} ${path} ${op.security[0]?.bearer[0] ?? "public"}`))
      .sort()
    expect(fromDoc).toEqual(fromTable)
  })
})

describe("tokens", () => {
  it("are found by their hash only, and scopes nest under admin", () => {
    const t = Tokens.make([
      { name: "grafana", scope: "read", hash: Tokens.hash("r-secret") },
      { name: "ops", scope: "admin", hash: Tokens.hash("a-secret") }
    ])
    expect(t.find("r-secret")).toEqual({ name: "grafana", scope: "read" })
    expect(t.find("a-secret")).toEqual({ name: "ops", scope: "admin" })
    expect(t.find("r-secre")).toBeUndefined()
    expect(t.find(Tokens.hash("r-secret"))).toBeUndefined()
    expect(Tokens.hash("x")).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(Tokens.generate()).toMatch(/^msv_[A-Za-z0-9_-]{32}$/)
    expect(Tokens.allows("admin", "inject")).toBe(true)
    expect(Tokens.allows("read", "inject")).toBe(false)
    expect(Tokens.allows("inject", "read")).toBe(false)
    expect(Tokens.allows("read", "public")).toBe(true)
  })
})
