import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { open, type SqliteOptions, type SqliteStore } from "../src/SqliteStore.js"
import { bodyStoreContract, eventStoreContract, workContract } from "./contracts.js"

const fixture =
  <T>(pick: (s: SqliteStore) => T, writer: SqliteOptions["writer"]) =>
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "missive-sqlite-"))
    const path = join(dir, "store.db")
    let s = open({ path, writer })
    return {
      store: pick(s),
      reopen: async () => {
        await s.close()
        s = open({ path, writer })
        return pick(s)
      },
      dispose: async () => {
        await s.close()
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
for (const writer of ["worker", "inline"] as const) {
  eventStoreContract(
    `sqlite (${writer} writer)`,
    fixture((s) => s.events, writer)
  )
  bodyStoreContract(
    `sqlite (${writer} writer)`,
    fixture((s) => s.bodies, writer)
  )
  workContract(
    `sqlite (${writer} writer)`,
    fixture((s) => s.work, writer)
  )
}

// Bodies in segment files: written once, beside the database; the rows say where each lies.
describe("sqlite body segments", () => {
  const segmentsIn = (dir: string) => readdirSync(join(dir, "bodies")).sort()
  const body = (i: number, size = 1000) => Buffer.alloc(size, 65 + (i % 26))

  for (const writer of ["worker", "inline"] as const) {
    it(`keeps bodies in segment files, which a new open finds (${writer} writer)`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "missive-segments-"))
      const path = join(dir, "store.db")
      try {
        let s = open({ path, writer })
        const digests = await Promise.all([0, 1, 2].map((i) => s.bodies.put(body(i))))
        expect(segmentsIn(dir)).toEqual(["00000001.seg"])
        expect(statSync(join(dir, "bodies", "00000001.seg")).size).toBe(3000)
        await s.close()
        s = open({ path, writer })
        expect(await s.bodies.get(digests[1]!)).toEqual(body(1))
        await s.bodies.put(body(3))
        // a new open never appends to an old segment (its tail may be torn)
        expect(segmentsIn(dir)).toEqual(["00000001.seg", "00000002.seg"])
        await s.close()
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })

    it(`removes a sealed segment once its bodies are deleted, and compacts one mostly deleted (${writer} writer)`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "missive-segments-"))
      const path = join(dir, "store.db")
      try {
        const s = open({ path, writer, segmentBytes: 10_000 })
        // ten bodies of 1000 bytes per segment
        const digests: Array<string> = []
        for (let i = 0; i < 25; i++) digests.push(await s.bodies.put(body(i)))
        expect(segmentsIn(dir)).toEqual(["00000001.seg", "00000002.seg", "00000003.seg"])
        for (const d of digests.slice(0, 10)) await s.bodies.delete(d)
        expect(segmentsIn(dir)).toEqual(["00000002.seg", "00000003.seg"])
        // nine of segment 2's ten deleted: its last live body is copied forward and the segment removed
        for (const d of digests.slice(10, 19)) await s.bodies.delete(d)
        expect(segmentsIn(dir)).toEqual(["00000003.seg"])
        for (const [i, d] of digests.entries()) if (i >= 19) expect(await s.bodies.get(d)).toEqual(body(i))
        await s.close()
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })
  }

  it("removes at open a segment no row refers to (bytes of a commit a crash lost)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "missive-segments-"))
    const path = join(dir, "store.db")
    try {
      let s = open({ path })
      const kept = await s.bodies.put(body(1))
      await s.close()
      writeFileSync(join(dir, "bodies", "00000007.seg"), body(2))
      s = open({ path })
      await s.bodies.put(body(3))
      expect(segmentsIn(dir)).toEqual(["00000001.seg", "00000008.seg"])
      expect(await s.bodies.get(kept)).toEqual(body(1))
      await s.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
