// PolicyActivated: the configuration behind a policy hash recorded once per hash (also when two nodes activate it at
// once), with every secret replaced by the same redaction the admin API's effective-config endpoint uses.
import { Codec, EventStore } from "@missive/events"
import { describe, expect, it } from "vitest"
import * as Activation from "../src/config/Activation.js"
import * as Config from "../src/config/Config.js"
import { policyHashOf } from "../src/Node.js"

const SECRETS = {
  password: "scrypt$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
  token: "sha256:" + "ab".repeat(32),
  rspamd: "rspamd-password-1",
  dkim: "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-----END PRIVATE KEY-----",
  webhook: "webhook-signing-secret-0123456789",
  nats: "natsuser:natspass"
}

const configOf = (tls: string): Config.Config => {
  const r = Config.parse(`
node_id: node-a
auth:
  users:
    - name: alice
      password: "${SECRETS.password}"
http:
  tokens:
    - name: ops
      hash: "${SECRETS.token}"
      scope: admin
filter:
  rspamd:
    url: http://127.0.0.1:11333
    password: ${SECRETS.rspamd}
  dkim:
    keys:
      - domain: example.org
        selector: s1
        key: "${SECRETS.dkim}"
events:
  destinations:
    - name: hook
      webhook: https://hooks.example.org/missive
      secret: ${SECRETS.webhook}
delivery:
  tls: ${tls}
`)
  if (!r.ok) throw new Error(r.errors.join("\n"))
  return r.config
}

const activation = (config: Config.Config, reason: "start" | "reload" = "start", node = "node-a") => ({
  config,
  hash: policyHashOf(config),
  node,
  at: 1_746_093_600_000,
  reason
})

describe("PolicyActivated", () => {
  it("is recorded once per policy hash, the configuration without a secret", async () => {
    const store = EventStore.makeMemory()
    const a = configOf("opportunistic")
    expect(await Activation.record(store, activation(a))).toBe(true)
    expect(await Activation.record(store, activation(a, "start", "node-b"))).toBe(false)
    const b = configOf("none")
    expect(policyHashOf(b)).not.toBe(policyHashOf(a))
    // where the delivery role runs decides nothing: the same policy
    expect(policyHashOf({ ...a, delivery: { ...a.delivery, thread: "worker" } })).toBe(policyHashOf(a))
    expect(policyHashOf({ ...a, delivery: { ...a.delivery, thread: "main" } })).toBe(policyHashOf(a))
    expect(await Activation.record(store, activation(b, "reload"))).toBe(true)
    const stored = await store.read(Activation.STREAM)
    expect(stored.map((s) => s.event.type === "PolicyActivated" && [s.event.hash, s.event.reason])).toEqual([
      [policyHashOf(a), "start"],
      [policyHashOf(b), "reload"]
    ])
    const encoded = stored.map((s) => Codec.encode(s.event)).join("\n")
    for (const secret of Object.values(SECRETS)) expect(encoded).not.toContain(secret)
    expect(encoded).toContain("[redacted]")
    // What is not a secret stays: it is what an operator reads back.
    const first = (await Activation.list(store))[0]!
    expect(first.config).toMatchObject({ node_id: "node-a", delivery: { tls: "opportunistic" }, auth: { users: [{ name: "alice" }] } })
    expect(Codec.decode(Codec.encode(first))).toEqual(first)
  })

  it("a reload records a file it does not apply as awaiting a restart; the start that applies it records it in effect", async () => {
    const store = EventStore.makeMemory()
    const running = configOf("opportunistic")
    const file = configOf("required")
    expect(Activation.awaiting(running, running)).toEqual([])
    // The filter maps are what a reload applies: they never await a restart.
    expect(
      Activation.awaiting(running, { ...running, filter: { ...running.filter, rspamd: { ...running.filter.rspamd, url: null } } })
    ).toEqual([])
    const keys = Activation.awaiting(running, file)
    expect(keys).toEqual(["delivery.tls"])
    await Activation.record(store, activation(running))
    expect(await Activation.record(store, { ...activation(file, "reload"), awaitingRestart: keys })).toBe(true)
    // A second reload of the same file adds nothing; the restart with it records the hash again, now in effect.
    expect(await Activation.record(store, { ...activation(file, "reload"), awaitingRestart: keys })).toBe(false)
    expect(await Activation.record(store, activation(file, "start"))).toBe(true)
    expect(await Activation.record(store, activation(file, "start", "node-b"))).toBe(false)
    expect((await Activation.list(store)).map((e) => [e.hash, e.reason, e.awaitingRestart])).toEqual([
      [policyHashOf(running), "start", undefined],
      [policyHashOf(file), "reload", ["delivery.tls"]],
      [policyHashOf(file), "start", undefined]
    ])
  })

  it("two nodes activating the same hash at once record it once (the stream's expected version)", async () => {
    const store = EventStore.makeMemory()
    const c = configOf("required")
    const results = await Promise.all([Activation.record(store, activation(c)), Activation.record(store, activation(c, "start", "node-b"))])
    expect(results.filter((r) => r).length).toBe(1)
    expect((await Activation.list(store)).length).toBe(1)
  })
})
