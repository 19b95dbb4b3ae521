// The policy behind a real node's decisions, in its log: a node process started with one configuration, reloaded
// (`missive config reload`) with another and restarted with that one records PolicyActivated three times (start; the
// reload's file, not applied, with the keys awaiting a restart; the restart, which applies it), without its secrets; `missive replay policy` prints each, `--diff` shows the
// changed key, the timeline names the hash each message was received under, and what-if diffs against ALT.
import { SqliteStore } from "@missive/events"
import { join } from "node:path"
import { stringify } from "yaml"
import { writeFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Config, Http, Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import {
  freePort,
  missive,
  rawMessage,
  send,
  spawnNode,
  tempDir,
  testConfig,
  waitFor,
  writeConfig,
  type ChildNode
} from "../src/Harness.js"

const TOKEN = "policy-e2e-admin-token-0123456789"

describe("PolicyActivated on a real node", () => {
  const dir = tempDir("missive-policy-")
  let capture: CaptureServer
  let node: ChildNode | undefined
  let configPath = ""
  let passwordHash = ""
  const hashes: Array<string> = []
  const ids: Array<string> = []

  const configWith = async (tls: string, smtp: number) =>
    testConfig(join(dir.path, "data"), {
      listeners: { smtp: { port: smtp }, submission: { enabled: false }, http: { port: 0 } },
      routes: { "dest.test": `127.0.0.1:${capture.port}` },
      relay: { relay_domains: ["dest.test"] },
      auth: { users: [{ name: "alice", password: passwordHash }] },
      http: { tokens: [{ name: "ops", scope: "admin", hash: Http.hashToken(TOKEN) }] },
      delivery: { tls }
    })
  const hashOf = (config: Record<string, unknown>) => {
    const r = Config.parse(stringify(config), "test")
    if (!r.ok) throw new Error(r.errors.join("\n"))
    return Node.policyHashOf(r.config)
  }
  const mail = async (smtp: number, n: number) => {
    const r = await send(
      smtp,
      { from: "a@sender.test", to: ["b@dest.test"] },
      rawMessage({ from: "a@sender.test", to: "b@dest.test", subject: `m${n}` })
    )
    expect(r.ok, r.response).toBe(true)
    ids.push(r.id!)
    await waitFor(`message ${n} delivered`, () => capture.messages.length >= n, 20_000)
  }
  /** The stored rows of the stream `policy`, as the node wrote them (read-only, beside the running node). */
  const policyRows = () => {
    const s = SqliteStore.open({ path: join(dir.path, "data", "missive.db"), readonly: true })
    return s.events.read("policy").finally(() => s.close())
  }

  beforeAll(async () => {
    capture = await startCapture()
    passwordHash = await Config.hashPassword("alice's password")
    const smtp = await freePort()
    // Start: delivery.tls none.
    const a = await configWith("none", smtp)
    hashes.push(hashOf(a))
    configPath = writeConfig(dir.path, a)
    node = await spawnNode(configPath)
    await mail(smtp, 1)
    // Reload: delivery.tls opportunistic, the same file re-read on `missive config reload` (SIGHUP to the lock holder).
    const b = await configWith("opportunistic", smtp)
    hashes.push(hashOf(b))
    writeConfig(dir.path, b)
    const reload = await missive("config", "reload", "--config", configPath)
    expect(reload.code, reload.stderr).toBe(0)
    await waitFor("the reload recorded", async () => (await policyRows()).length >= 2, 20_000)
    // Restart with the reloaded configuration: now in effect, recorded again.
    await node.stop()
    node = await spawnNode(configPath)
    await mail(smtp, 2)
    await node.stop()
    node = undefined
  }, 120_000)

  afterAll(async () => {
    await node?.stop()
    await capture?.close()
    dir.remove()
  })

  it("records the start, the reload's file as awaiting a restart (delivery.tls), and the restart that applies it, without a secret", async () => {
    expect(hashes[0]).not.toBe(hashes[1])
    const rows = await policyRows()
    expect(rows.map((r) => r.event.type === "PolicyActivated" && [r.event.hash, r.event.reason, r.event.awaitingRestart])).toEqual([
      [hashes[0], "start", undefined],
      [hashes[1], "reload", ["delivery.tls"]],
      [hashes[1], "start", undefined]
    ])
    const stored = JSON.stringify(rows)
    expect(stored).not.toContain(passwordHash)
    expect(stored).not.toContain(Http.hashToken(TOKEN))
    expect(stored).toContain("[redacted]")
  })

  it("replay policy prints a recorded policy, --diff the changed key", async () => {
    const shown = await missive("replay", "policy", hashes[0]!, "--config", configPath)
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.stdout).toContain(`# policy ${hashes[0]}: activated at start on test-node`)
    expect(shown.stdout).toMatch(/^ {2}tls: none$/m)
    expect(shown.stdout).toContain("[redacted]")
    expect(shown.stdout).not.toContain(passwordHash)
    const diff = await missive("replay", "policy", "--diff", hashes[0]!, hashes[1]!, "--config", configPath)
    expect(diff.code, diff.stderr).toBe(0)
    expect(diff.stdout.split("\n").filter((l) => /^[-+] /.test(l))).toEqual(['- delivery.tls: "none"', '+ delivery.tls: "opportunistic"'])
    const half = await missive("replay", "policy", "--diff", hashes[0]!, "--config", configPath)
    expect(half.code).toBe(2)
    expect(half.stderr).toContain("usage: missive replay policy HASH | missive replay policy --diff HASH_A HASH_B")
    const unknown = await missive("replay", "policy", "00000000", "--config", configPath)
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain(`recorded: ${hashes[0]}, ${hashes[1]}`)
  })

  it("the timeline names the policy each message was received under", async () => {
    for (const [i, id] of ids.entries()) {
      const t = await missive("replay", "timeline", id, "--config", configPath)
      expect(t.code, t.stderr).toBe(0)
      expect(t.stdout).toContain(`received under policy ${hashes[i]}, routed under policy ${hashes[i]}`)
    }
  })

  it("what-if shows the recorded policies against ALT's, with the key-path diff", async () => {
    const alt = await configWith("opportunistic", 2525)
    const altPath = join(dir.path, "alt.yaml")
    writeFileSync(altPath, stringify({ ...alt, retry: { ...(alt["retry"] as object), initial: "500ms" } }))
    const r = await missive("replay", "what-if", "--from", "-1h", "--to", "now", "--config", altPath, "--data", join(dir.path, "data"))
    expect(r.code, r.stderr).toBe(0)
    const altHash = hashOf({ ...alt, retry: { ...(alt["retry"] as object), initial: "500ms" } })
    expect(r.stdout).toContain(`policy ${hashes[0]} (recorded) -> ${altHash} (what-if):`)
    expect(r.stdout).toContain(`policy ${hashes[1]} (recorded) -> ${altHash} (what-if):`)
    expect(r.stdout).toMatch(/^ {2}- retry\.initial.*\n {2}\+ retry\.initial/m)
    expect(r.stdout).toContain('  - delivery.tls: "none"')
  })
})
