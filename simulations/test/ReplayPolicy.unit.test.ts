// `replay policy --diff`: two configurations compared by flattened key path, every differing leaf once per side.
import { describe, expect, it } from "vitest"
import { diff, flatten } from "../src/replay/Policy.js"

describe("policy diff by key path", () => {
  it("flattens objects and arrays to key paths, empty ones as leaves", () => {
    expect([...flatten({ a: { b: 1, c: [true, { d: null }] }, e: [], f: {}, g: "x" })]).toEqual([
      ["a.b", "1"],
      ["a.c[0]", "true"],
      ["a.c[1].d", "null"],
      ["e", "[]"],
      ["f", "{}"],
      ["g", '"x"']
    ])
  })

  it("shows a changed leaf as - then +, an added or removed one on its side only, in path order", () => {
    const a = { delivery: { tls: "none", concurrency: 5 }, routes: { "x.test": { host: "h", port: 25 } }, auth: { users: [] } }
    const b = { delivery: { tls: "opportunistic", concurrency: 5 }, routes: {}, auth: { users: [{ name: "alice" }] } }
    expect(diff(a, b)).toEqual([
      "- auth.users: []",
      '+ auth.users[0].name: "alice"',
      '- delivery.tls: "none"',
      '+ delivery.tls: "opportunistic"',
      "+ routes: {}",
      '- routes.x.test.host: "h"',
      "- routes.x.test.port: 25"
    ])
  })

  it("is empty for equal configurations, whatever their key order", () => {
    expect(diff({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 })).toEqual([])
    expect(diff({ a: [1, 2] }, { a: [2, 1] })).toEqual(["- a[0]: 1", "+ a[0]: 2", "- a[1]: 2", "+ a[1]: 1"])
  })
})
