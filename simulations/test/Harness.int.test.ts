// The harness without Missive: senders straight into the simulated receivers (the `direct` target), the loss check
// catching a target that answers 250 and drops the mail, and the `missive sim` command's exit codes.
import { spawnSync } from "node:child_process"
import { resolve } from "node:path"
import { SMTPServer } from "smtp-server"
import { describe, expect, it } from "vitest"
import { Dns, Html, Run, Scenario, World } from "../src/index.js"
import * as Client from "../src/Client.js"
import { startClock } from "../src/Time.js"

const ROOT = resolve(import.meta.dirname, "../..")

const scenario = (text: string): Scenario.Scenario => {
  const r = Scenario.parse(text)
  if (!r.ok) throw new Error(r.errors.join("\n"))
  return r.scenario
}

const small = `
name: small
duration: 2s
drain: 1s
senders: { connections: 4, loop: closed, messages: 60, recipients: { min: 1, max: 1 }, domains: [s.sim] }
destinations:
  - { domain: a.sim, weight: 1, behaviour: { perm_fail: 0.1 } }
`

describe("simulation harness", () => {
  it("direct: senders into receivers, 5xx refusals seen at the source, every 250 delivered", async () => {
    const r = await Run.run({ scenario: scenario(small), target: { kind: "direct" } })
    expect(r.counts.sent).toBe(60)
    expect(r.counts.accepted + r.counts.refused).toBe(60)
    expect(r.counts.refused).toBe(r.sourceReplies["550"])
    expect(r.counts.refused).toBeGreaterThan(0)
    expect(r.counts.delivered).toBe(r.counts.accepted)
    expect(r.counts.lost).toBe(0)
    const html = Html.render(r)
    expect(html).toContain("<svg")
    expect(html).not.toMatch(/<script|https?:\/\//)
  })

  it("the loss check fails a target that answers 250 and drops the message", async () => {
    const hole = new SMTPServer({
      authOptional: true,
      disabledCommands: ["AUTH"],
      hideSTARTTLS: true,
      logger: false,
      disableReverseLookup: true,
      onData: (stream, _s, cb) => {
        stream.resume()
        stream.on("end", () => cb(null, "2.0.0 gone"))
      }
    })
    await new Promise<void>((done) => hole.listen(0, "127.0.0.1", () => done()))
    const port = (hole.server.address() as { port: number }).port
    try {
      const r = await Run.run({ scenario: scenario(small), target: { kind: "smtp", host: "127.0.0.1", port } })
      expect(r.counts.accepted).toBe(60)
      expect(r.counts.lost).toBe(60)
      expect(r.lostExamples.length).toBeGreaterThan(0)
    } finally {
      await new Promise<void>((done) => hole.close(() => done()))
    }
  })

  it("the senders' lean client: pipelined envelope, dot-stuffing, partial and total refusals, reuse after a refusal", async () => {
    const bodies: Array<string> = []
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["AUTH"],
      hideSTARTTLS: true,
      logger: false,
      disableReverseLookup: true,
      onRcptTo: (a, _s, cb) => (a.address.startsWith("no") ? cb(Object.assign(new Error("5.1.1 no"), { responseCode: 550 })) : cb()),
      onData: (stream, _s, cb) => {
        const chunks: Array<Buffer> = []
        stream.on("data", (c: Buffer) => chunks.push(c))
        stream.on("end", () => {
          bodies.push(Buffer.concat(chunks).toString())
          cb(null, "2.0.0 ok")
        })
      }
    })
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", () => done()))
    const port = (server.server.address() as { port: number }).port
    try {
      const c = await Client.open({ host: "127.0.0.1", port, helo: "t.sim", timeoutMs: 5_000 })
      const part = (t: string) => Buffer.from(t)
      const a = await c.send("s@s.sim", ["a@a.sim", "no1@a.sim"], [part("Subject: x\r\n\r\n"), part(".dot\r\nmid\r\n..two")])
      expect(a.accepted).toEqual(["a@a.sim"])
      expect(a.rejected).toEqual([{ rcpt: "no1@a.sim", code: 550 }])
      await expect(c.send("s@s.sim", ["no2@a.sim"], [part("x\r\n")])).rejects.toMatchObject({ responseCode: 550 })
      const b = await c.send("s@s.sim", ["b@a.sim"], [part("y\r\n")])
      expect(b.accepted).toEqual(["b@a.sim"])
      expect(bodies).toEqual(["Subject: x\r\n\r\n.dot\r\nmid\r\n..two\r\n", "y\r\n"])
      c.close()
      await expect(Client.open({ host: "127.0.0.1", port: 1, helo: "t.sim", timeoutMs: 1_000 })).rejects.toMatchObject({
        responseCode: undefined,
        stage: "connect"
      })
    } finally {
      await new Promise<void>((done) => server.close(() => done()))
    }
  })

  it("the world answers MX and A for its domains on loopback", async () => {
    const world = await World.start(scenario(small), startClock())
    try {
      const { Resolver } = await import("node:dns/promises")
      const res = new Resolver()
      res.setServers([world.dns.server])
      expect(await res.resolveMx("a.sim")).toMatchObject([{ exchange: "mx1.a.sim", priority: 10 }]) // Node 24 adds type: "MX"
      expect(await res.resolve4("mx1.s.sim")).toEqual([world.hosts.get("s.sim")![0]])
      await expect(res.resolveMx("nowhere.sim")).rejects.toMatchObject({ code: "ENOTFOUND" })
    } finally {
      await world.close()
    }
    expect(Dns.nullMx.mx?.[0]?.exchange).toBe(".")
  })

  it("missive sim: check reports key paths, bad targets and cluster-only scenarios are refused with exit 2", () => {
    const cli = (...args: Array<string>) =>
      spawnSync(process.execPath, [resolve(ROOT, "bin/missive.mjs"), "sim", ...args], { cwd: ROOT, encoding: "utf8" })
    const bad = cli("check", resolve(ROOT, "package.json"))
    expect(bad.status).toBe(1)
    expect(bad.stderr).toMatch(/package.json:1:1: destinations: required key is missing\n/)
    expect(bad.stderr).toMatch(/package.json:3:3: version: unknown key/)
    expect(cli("check", "steady").stdout).toBe("steady: OK\n")
    const zero = cli("run", "steady", "--target", "cluster:0")
    expect(zero.status).toBe(2)
    expect(zero.stderr).toMatch(/cluster:N needs N of at least 1/)
    const embedded = cli("run", "node-killed", "--target", "embedded")
    expect(embedded.status).toBe(2)
    expect(embedded.stderr).toMatch(/needs a cluster target/)
    expect(cli("list").stdout).toMatch(/^node-killed\s+\[needs --target cluster:N\]/m)
  })
})
