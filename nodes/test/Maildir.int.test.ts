// Maildir delivery on a real file system under a temp dir: tmp → new, Return-Path, unsafe names refused.
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Reply } from "@missive/core"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { mailboxPath, makeMaildir } from "../src/delivery/Maildir.js"

let root: string
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "missive-maildir-"))
})
afterEach(() => rm(root, { recursive: true, force: true }))

const BODY = Buffer.from("Subject: hi\r\n\r\n.dot stays\r\n\xe9\r\n", "latin1")

describe("Maildir", () => {
  it("creates the mailbox on first delivery and writes Return-Path plus the body byte-exact into new", async () => {
    const md = makeMaildir({ root, hostname: "node/1:a", clock: { now: () => 1_700_000_000_123 } })
    const r = await md.deliver({ from: "a@x.test", to: ["Bob@Local.Test"] }, BODY)
    expect(r).toEqual({ host: "maildir", results: [{ rcpt: "Bob@Local.Test", reply: Reply.Replies.ok }] })
    const box = join(root, "local.test", "bob")
    for (const d of ["tmp", "new", "cur"]) expect((await stat(join(box, d))).isDirectory()).toBe(true)
    expect(await readdir(join(box, "tmp"))).toEqual([])
    const files = await readdir(join(box, "new"))
    expect(files).toHaveLength(1)
    // <time>.<pid>_<counter>.<hostname>, with "/" and ":" of the host name escaped as \057 and \072
    expect(files[0]).toMatch(/^1700000000\.(\d+)_\d+\.node\\0571\\072a$/)
    expect(files[0]?.split(".")[1]?.split("_")[0]).toBe(String(process.pid))
    const content = await readFile(join(box, "new", files[0] ?? ""))
    expect(content.equals(Buffer.concat([Buffer.from("Return-Path: <a@x.test>\r\n"), BODY]))).toBe(true)
  })

  it("writes one file per recipient with unique names, and the null sender as <>", async () => {
    const md = makeMaildir({ root, hostname: "h" })
    const r = await md.deliver({ from: "", to: ["a@l.test", "a@l.test", "b@l.test"] }, BODY)
    expect(r.results.map((x) => x.reply.code)).toEqual([250, 250, 250])
    const a = await readdir(join(root, "l.test", "a", "new"))
    expect(new Set(a).size).toBe(2)
    const b = await readFile(join(root, "l.test", "b", "new", (await readdir(join(root, "l.test", "b", "new")))[0] ?? ""))
    expect(b.subarray(0, 17).toString()).toBe("Return-Path: <>\r\n")
  })

  it("refuses local parts that could leave the root, and delivers the rest", async () => {
    const md = makeMaildir({ root, hostname: "h" })
    const bad = ["../x@l.test", "a/b@l.test", "..@l.test", ".hidden@l.test", "a..b@l.test", "x@../l.test", "@l.test", "a\\b@l.test"]
    const r = await md.deliver({ from: "a@x.test", to: [...bad, "ok@l.test"] }, BODY)
    expect(r.results.map((x) => x.reply.code)).toEqual([...bad.map(() => 550), 250])
    expect(r.results[0]?.reply).toEqual(Reply.Replies.mailboxUnavailable)
    expect(await readdir(root)).toEqual(["l.test"])
    expect(await readdir(join(root, "l.test"))).toEqual(["ok"])
    for (const a of bad) expect(mailboxPath(root, a)).toBeNull()
  })

  it("reports a local failure as 4xx", async () => {
    const md = makeMaildir({ root: join(root, "file"), hostname: "h" })
    await (await import("node:fs/promises")).writeFile(join(root, "file"), "not a directory")
    const r = await md.deliver({ from: "a@x.test", to: ["a@l.test"] }, BODY)
    expect(r.results[0]?.reply).toMatchObject({ code: 451, enhanced: "4.3.0" })
  })
})
