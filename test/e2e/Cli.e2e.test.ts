// The `missive` command as a user runs it: config check errors, queue list and queue show against a real node.
import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import {
  freePort,
  rawMessage,
  ROOT,
  send,
  spawnNode,
  tempDir,
  testConfig,
  waitFor,
  writeConfig,
  type ChildNode,
  missive
} from "../src/Harness.js"

describe("missive CLI", () => {
  let down: CaptureServer
  let node: ChildNode | undefined
  const dir = tempDir()
  let configPath = ""

  beforeAll(async () => {
    down = await startCapture({ onRcpt: () => ({ code: 451, text: "4.2.1 Mailbox busy" }) })
    const port = await freePort()
    configPath = writeConfig(
      dir.path,
      testConfig(join(dir.path, "data"), {
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        routes: { "down.test": `127.0.0.1:${down.port}` },
        relay: { relay_domains: ["down.test"] },
        retry: { initial: "1h", max: "2h", lifetime: "5d" }
      })
    )
    node = await spawnNode(configPath)
  })
  afterAll(async () => {
    await node?.stop()
    await down?.close()
    dir.remove()
  })

  it("config check reports each bad key with its path", async () => {
    const bad = join(dir.path, "bad.yaml")
    writeFileSync(bad, "limits:\n  max_recipients: abc\nretry:\n  initial: soon\nlisteners:\n  smtp:\n    port: 70000\nbogus: 1\n")
    const r = await missive("config", "check", bad)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/limits\.max_recipients/)
    expect(r.stderr).toMatch(/retry\.initial/)
    expect(r.stderr).toMatch(/listeners\.smtp\.port/)
    expect(r.stderr).toMatch(/bogus/)
    const ok = await missive("config", "check", configPath)
    expect(ok.code).toBe(0)
  })

  it("rejects unknown commands and options precisely", async () => {
    const r = await missive("frobnicate")
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/unknown command "frobnicate"/)
    const o = await missive("queue", "list", "--colour")
    expect(o.code).toBe(2)
    expect(o.stderr).toMatch(/unknown option --colour/)
  })

  it("lists a deferred message and shows its timeline", async () => {
    const port = Number(/port: (\d+)/.exec((await import("node:fs")).readFileSync(configPath, "utf8"))?.[1])
    const s = await send(
      port,
      { from: "a@sender.test", to: ["b@down.test"] },
      rawMessage({ from: "a@sender.test", to: "b@down.test", subject: "deferred one" })
    )
    expect(s.ok, s.response).toBe(true)
    const list = await waitFor("deferred in queue list", async () => {
      const r = await missive("queue", "list", "--config", configPath)
      return r.stdout.includes("deferred") && r.stdout.includes(s.id!) ? r : undefined
    })
    expect(list.stdout).toMatch(/a@sender\.test/)
    expect(list.stdout).toMatch(/b@down\.test\s+deferred\s+\(451 4\.2\.1 Mailbox busy\)/)
    const json = JSON.parse((await missive("queue", "list", "--config", configPath, "--json")).stdout)
    expect(json[0]).toMatchObject({ id: s.id, sender: "a@sender.test", recipients: [{ address: "b@down.test", status: "deferred" }] })
    const show = await missive("queue", "show", s.id!, "--config", configPath)
    expect(show.code).toBe(0)
    for (const t of ["MessageReceived", "RecipientsRouted", "AttemptStarted", "AttemptDeferred"]) expect(show.stdout).toContain(t)
    expect(show.stdout).toMatch(/451 4\.2\.1 Mailbox busy/)
    const missing = await missive("queue", "show", "NOSUCHID", "--config", configPath)
    expect(missing.code).toBe(1)
  })

  it("holds, releases, retries and deletes a message through the running node, recording who asked", async () => {
    const port = Number(/port: (\d+)/.exec((await import("node:fs")).readFileSync(configPath, "utf8"))?.[1])
    const s = await send(
      port,
      { from: "op@sender.test", to: ["c@down.test"] },
      rawMessage({ from: "op@sender.test", to: "c@down.test", subject: "operated" })
    )
    expect(s.ok, s.response).toBe(true)
    const id = s.id!
    await waitFor("first attempt", async () =>
      (await missive("queue", "show", id, "--config", configPath)).stdout.includes("AttemptDeferred")
    )
    const hold = await missive("queue", "hold", id, "--config", configPath, "--by", "carol")
    expect(hold.code, hold.stderr).toBe(0)
    expect(hold.stdout).toContain("MessageHeld")
    expect((await missive("queue", "list", "--config", configPath)).stdout).toMatch(new RegExp(`${id}.*held`))
    expect((await missive("queue", "release", id, "--config", configPath)).stdout).toContain("MessageReleased")
    const attemptsBefore = ((await missive("queue", "show", id, "--config", configPath)).stdout.match(/AttemptStarted/g) ?? []).length
    expect((await missive("queue", "retry", id, "--config", configPath)).stdout).toContain("RetryRequested")
    await waitFor(
      "an attempt right after retry",
      async () =>
        ((await missive("queue", "show", id, "--config", configPath)).stdout.match(/AttemptStarted/g) ?? []).length > attemptsBefore
    )
    const del = await missive("queue", "delete", id, "--config", configPath)
    expect(del.stdout).toContain("MessageDeleted")
    expect((await missive("queue", "list", "--config", configPath)).stdout).not.toContain(id)
    const show = await missive("queue", "show", id, "--config", configPath)
    expect(show.stdout).toMatch(/held by carol/)
    expect(show.stdout).toMatch(/deleted by/)
    const again = await missive("queue", "release", id, "--config", configPath)
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/MessageFinished/)
  })
})

// Runs only as root (CI and the test containers are): as another user there is nothing to warn about.
describe.runIf(process.geteuid?.() === 0)("missive start as root", () => {
  const dir = tempDir()
  afterAll(() => dir.remove())

  it("warns without --allow-root and starts; with it, starts without the warning", async () => {
    const port = await freePort()
    const data = join(dir.path, "data")
    const configPath = writeConfig(
      dir.path,
      testConfig(data, { listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } } })
    )
    const warning =
      "missive: warning: running as root. Run it as an unprivileged user (deploy/missive.service runs it as the user\n" +
      "  'missive' and grants port 25 with AmbientCapabilities=CAP_NET_BIND_SERVICE), or pass --allow-root to say that\n" +
      "  root is meant (containers, CI) and silence this warning\n"
    // Without the flag: the README's first command as root (a container) still starts a node, with the warning first.
    const bare = spawn(process.execPath, [join(ROOT, "bin/missive.mjs"), "start", "--config", configPath], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    bare.stdout!.on("data", (b: Buffer) => (out += b.toString()))
    bare.stderr!.on("data", (b: Buffer) => (err += b.toString()))
    try {
      await waitFor("the node listens", () => (out + err).includes(`listening on smtp ${port}`), 30_000)
      expect(err.startsWith(warning)).toBe(true)
    } finally {
      const exited = new Promise((done) => bare.once("exit", done))
      bare.kill("SIGTERM")
      await exited
    }
    // spawnNode passes --allow-root, as every test, launcher and benchmark that starts a node does: no warning.
    const node = await spawnNode(configPath)
    try {
      expect(node.output()).toContain(`listening on smtp ${port}`)
      expect(node.output()).not.toContain("warning: running as root")
    } finally {
      expect(await node.stop()).toBe(0)
    }
  })
})
