// Which nats-server versions Missive's cluster refuses (cluster up) or warns about (a node at start): older than
// 2.11.0, whose replicated consumers can skip and remove a never-delivered inbox message after a leader change.
import { describe, expect, it } from "vitest"
import { NATS_MIN, tooOld, versionAtLeast } from "../src/cluster/Launcher.js"

describe("nats-server minimum", () => {
  it("is 2.11.0", () => expect(NATS_MIN).toBe("2.11.0"))

  it("refuses 2.9 and every 2.10, synced or not", () => {
    for (const v of ["2.9.25", "2.10.0", "2.10.23", "2.10.27", "2.10.99"]) expect(tooOld(v), v).toBe(true)
  })

  it("takes 2.11.0 and later, release candidates of them included", () => {
    for (const v of ["2.11.0", "2.11.0-RC.1", "2.11.9", "2.12.1", "2.15.1", "3.0.0"]) expect(tooOld(v), v).toBe(false)
  })

  it("says nothing when the version is unknown", () => expect(tooOld(undefined)).toBe(false))

  it("compares numerically, not as text", () => {
    expect(versionAtLeast("2.10.23", "2.9.0")).toBe(true)
    expect(versionAtLeast("2.9.25", "2.10.23")).toBe(false)
    expect(versionAtLeast("10.0.0", "2.11.0")).toBe(true)
  })
})
