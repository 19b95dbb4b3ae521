// Who may send what to whom, through a real node process: unknown local users refused at RCPT (550 5.1.1, never a
// later bounce), aliases expanding to several addresses, a domain catch-all, plus-addressing, a relay domain's
// recipient list, canonical rewriting of the sender, a submission login's own addresses (553 5.7.1 otherwise), and
// a map file re-read by `missive config reload` without a restart.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { SqliteStore } from "@missive/events"
import { Config } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { missive, rawMessage, send, spawnNode, tempDir, testConfig, waitFor, writeConfig, type ChildNode } from "../src/Harness.js"

describe("address rules at the filter stage", () => {
  let dest: CaptureServer
  let node: ChildNode
  let configPath: string
  const ports: Record<string, number> = {}
  const dir = tempDir()
  const maps = join(dir.path, "maps.yaml")

  beforeAll(async () => {
    dest = await startCapture()
    writeFileSync(maps, "aliases:\n  sales@missive.test: [s1@dest.test]\n")
    configPath = writeConfig(
      dir.path,
      testConfig(join(dir.path, "data"), {
        relay: { local_domains: ["missive.test", "catch.test"], relay_domains: ["dest.test", "listed.test"] },
        routes: { "dest.test": `127.0.0.1:${dest.port}`, "listed.test": `127.0.0.1:${dest.port}` },
        auth: { require_tls: false, users: [{ name: "alice", password: await Config.hashPassword("s3cret") }] },
        filter: {
          recipients: {
            users: ["ann@missive.test", "bob"],
            aliases: { "team@missive.test": ["ann@missive.test", "x@dest.test", "y@dest.test"], "@catch.test": ["ann@missive.test"] },
            plus_delimiter: "+",
            relay: { "listed.test": ["ok@listed.test"] }
          },
          senders: { canonical: { "@old.test": "@new.test" }, logins: { alice: ["alice@missive.test", "@alice.test"] } },
          files: [maps]
        }
      })
    )
    node = await spawnNode(configPath)
    for (const m of node.output().matchAll(/(smtp|submission) (\d+)/g)) ports[m[1]!] = Number(m[2])
  })
  afterAll(async () => {
    await node?.stop()
    await dest?.close()
    dir.remove()
  })

  const to = (rcpt: string, from = "someone@sender.test") =>
    send(ports["smtp"]!, { from, to: [rcpt] }, rawMessage({ from, to: rcpt, subject: `to ${rcpt}` }))

  it("refuses an unknown local user at RCPT with 550 5.1.1 and accepts users, plus-addresses and the catch-all", async () => {
    const unknown = await to("nobody@missive.test")
    expect(unknown.ok).toBe(false)
    expect(unknown.response).toMatch(/^550 5\.1\.1/)
    for (const ok of ["ann@missive.test", "ann+lists@missive.test", "bob@missive.test", "anything@catch.test", "postmaster@missive.test"]) {
      const r = await to(ok)
      expect(r.ok, `${ok}: ${r.response}`).toBe(true)
    }
    expect((await to("nobody+tag@missive.test")).response).toMatch(/^550 5\.1\.1/)
  })

  it("expands an alias to several addresses, and checks a relay domain's recipient list", async () => {
    const r = await to("team@missive.test")
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("alias delivery", () => dest.messages.find((m) => m.raw.includes("Subject: to team@missive.test")))
    expect([...got.to].sort()).toEqual(["x@dest.test", "y@dest.test"])
    expect((await to("ok@listed.test")).ok).toBe(true)
    expect((await to("other@listed.test")).response).toMatch(/^550 5\.1\.1/)
  })

  it("rewrites the sender canonically, and holds a submission login to its own addresses (553 5.7.1)", async () => {
    const r = await to("c1@dest.test", "a@old.test")
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("canonical delivery", () => dest.messages.find((m) => m.to.includes("c1@dest.test")))
    expect(got.from).toBe("a@new.test")
    const submit = (from: string) =>
      send(ports["submission"]!, { from, to: ["c2@dest.test"] }, rawMessage({ from, to: "c2@dest.test", subject: `as ${from}` }), {
        auth: { user: "alice", pass: "s3cret" }
      })
    const foreign = await submit("bob@missive.test")
    expect(foreign.ok).toBe(false)
    expect(foreign.response).toMatch(/^553 5\.7\.1/)
    expect((await submit("alice@missive.test")).ok).toBe(true)
    expect((await submit("news@alice.test")).ok).toBe(true)
  })

  it("re-reads a map file on `missive config reload`, without a restart", async () => {
    expect((await to("later@missive.test")).response).toMatch(/^550 5\.1\.1/)
    expect((await to("sales@missive.test")).ok).toBe(true)
    writeFileSync(maps, "aliases:\n  sales@missive.test: [s1@dest.test]\n  later@missive.test: [l1@dest.test]\n")
    const reload = await missive("config", "reload", "--config", configPath)
    expect(reload.code, reload.stderr).toBe(0)
    await waitFor("reload", () => node.output().includes("filter maps reloaded"))
    const r = await to("later@missive.test")
    expect(r.ok, r.response).toBe(true)
    await waitFor("delivery to the new alias", () => dest.messages.find((m) => m.to.includes("l1@dest.test")))
    // recorded as an event on the stream `filter`
    const store = SqliteStore.open({ path: join(dir.path, "data", "missive.db"), readonly: true })
    const reloads = await waitFor("FilterReloaded", async () => {
      const events = (await store.events.read("filter")).map((e) => e.event)
      return events.length > 0 ? events : undefined
    })
    await store.close()
    expect(reloads[0]).toMatchObject({ type: "FilterReloaded", by: "SIGHUP", users: 2, aliases: 4, files: [maps] })
    // a broken file is refused and the maps in force stay
    writeFileSync(maps, "aliases: [not, a, mapping]\n")
    expect((await missive("config", "reload", "--config", configPath)).code).toBe(0)
    await waitFor("refused reload", () => node.output().includes("the previous maps stay"))
    expect((await to("later@missive.test")).ok).toBe(true)
  })
})
