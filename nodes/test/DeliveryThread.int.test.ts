// The delivery role in its own thread (delivery/Thread.ts) against a real SMTP server on loopback: an attempt made in
// the worker gives the same replies as one made on the main thread, the lease check before the final dot is asked of
// the main thread (and a "no" leaves the server without the message), and MTA-STS discovery goes through the main
// thread's resolver. The worker runs the compiled deliverer (dist/, built by the test run's global setup).
import type { Route } from "@missive/core"
import { afterEach, describe, expect, it } from "vitest"
import { defaults, type Config } from "../src/config/Config.js"
import type { Deliverer } from "../src/delivery/Deliverer.js"
import { inWorker } from "../src/delivery/Thread.js"
import type { DnsResolver } from "../src/router/Resolver.js"
import { startCapture } from "../../test/src/CaptureServer.js"

type SmtpDestination = Extract<Route.Destination, { kind: "smtp" }>

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

const config = (delivery: Partial<Config["delivery"]> = {}): Config => ({
  ...defaults,
  hostname: "client.missive.test",
  delivery: { ...defaults.delivery, tls: "none", connect_timeout: 2000, command_timeout: 5000, mta_sts: false, ...delivery }
})

const worker = (c: Config, resolver?: DnsResolver): Deliverer => {
  const d = inWorker(c, { resolver, log: () => undefined })
  cleanup.push(() => d.close())
  return d
}

const via = (key: string, port: number): SmtpDestination => ({
  kind: "smtp",
  key,
  via: "mx",
  hops: [{ host: "127.0.0.1", port, preference: 10, name: "mx.example.test" }]
})

const body = Buffer.from("Subject: hello\r\n\r\nfrom the delivery thread\r\n.leading dot\r\n", "latin1")

describe("delivery in a worker thread", () => {
  it("says when it is ready: the thread has loaded and built its deliverer", async () => {
    const dl = inWorker(defaults)
    try {
      await expect(dl.ready).resolves.toBeUndefined()
    } finally {
      await dl.close()
    }
  })

  it("delivers and answers per recipient as the main thread's deliverer does", async () => {
    const server = await startCapture({ onRcpt: (r) => (r.startsWith("no@") ? { code: 550, text: "5.1.1 no such user" } : undefined) })
    cleanup.push(() => server.close())
    const d = worker(config())
    const out = await d.deliver(
      via(`test:${server.port}`, server.port),
      { from: "a@b.test", to: ["x@example.test", "no@example.test"] },
      body,
      "m1"
    )
    expect(out.host).toBe(`127.0.0.1:${server.port}`)
    expect(out.results.map((r) => [r.rcpt, r.reply.code])).toEqual([
      ["x@example.test", 250],
      ["no@example.test", 550]
    ])
    expect(out.trace?.hops.map((h) => h.outcome)).toEqual(["connected"])
    expect(server.messages).toHaveLength(1)
    expect(server.messages[0]?.raw.toString("latin1")).toContain("from the delivery thread\r\n.leading dot")
    expect(server.messages[0]?.helo).toBe("client.missive.test")
    // a second attempt reuses the pooled session in the worker
    await d.deliver(via(`test:${server.port}`, server.port), { from: "a@b.test", to: ["y@example.test"] }, body, "m2")
    expect(server.messages).toHaveLength(2)
    expect(server.connections).toBe(1)
  })

  it("asks the main thread's fence before the final dot; a refusal leaves the server without the message", async () => {
    const server = await startCapture()
    cleanup.push(() => server.close())
    const d = worker(config())
    const asked: string[] = []
    const refused = await d.deliver(
      via(`test:${server.port}`, server.port),
      { from: "a@b.test", to: ["x@example.test"], fence: () => (asked.push("m1"), false) },
      body,
      "m1"
    )
    expect(asked).toEqual(["m1"])
    expect(refused.results[0]?.reply.code).toBeGreaterThanOrEqual(400)
    expect(refused.results[0]?.reply.text).toContain("fenced")
    const allowed = await d.deliver(
      via(`test:${server.port}`, server.port),
      { from: "a@b.test", to: ["x@example.test"], fence: () => (asked.push("m2"), true) },
      body,
      "m2"
    )
    expect(allowed.results[0]?.reply.code).toBe(250)
    expect(asked).toEqual(["m1", "m2"])
    expect(server.messages).toHaveLength(1)
  })

  it("looks up MTA-STS through the main thread's resolver", async () => {
    const server = await startCapture()
    cleanup.push(() => server.close())
    const names: string[] = []
    const resolver: DnsResolver = {
      mx: () => Promise.reject(new Error("not used")),
      a: () => Promise.reject(new Error("not used")),
      aaaa: () => Promise.reject(new Error("not used")),
      txt: async (name) => {
        names.push(name)
        return { records: [], rcode: "NXDOMAIN" }
      }
    }
    const d = worker(config({ mta_sts: true }), resolver)
    const out = await d.deliver(via("mx:example.test", server.port), { from: "a@b.test", to: ["x@example.test"] }, body, "m1")
    expect(names).toEqual(["_mta-sts.example.test"])
    expect(out.results[0]?.reply.code).toBe(250)
  })

  it("fails the attempts of a closed deliverer instead of hanging", async () => {
    const d = inWorker(config(), {})
    await d.close()
    await expect(d.deliver(via("test:1", 1), { from: "a@b.test", to: ["x@example.test"] }, body, "m1")).rejects.toThrow(/delivery thread/)
  })
})
