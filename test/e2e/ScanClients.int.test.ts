// The scanner clients against the real daemons (Debian's rspamd and clamd, started by test/src/Rspamd.ts and Clamd.ts)
// and against tiny TCP servers that misbehave the ways a scanner can: refuses, never answers, answers garbage, closes
// mid-reply. Every case ends in a defined outcome within the client's deadline.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Clamd as ClamdClient, Rspamd as RspamdClient } from "@missive/node"
import { EICAR, EICAR_SIGNATURE, startClamd, type Clamd } from "../src/Clamd.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { rawMessage } from "../src/Harness.js"
import { GTUBE, startRspamd, type Rspamd } from "../src/Rspamd.js"
import { misbehaving } from "../src/Misbehaving.js"
import { freePort } from "../src/Support.js"

const message = (body: string) => Buffer.from(rawMessage({ from: "a@client.test", to: "b@missive.test", subject: "scan", body }))
const envelope = { ip: "127.0.0.9", helo: "client.test", sender: "a@client.test", recipients: ["b@missive.test", "c@missive.test"] }

let dns: DnsServer
let rspamd: Rspamd
let clamd: Clamd

beforeAll(async () => {
  dns = await startDnsServer()
  ;[rspamd, clamd] = await Promise.all([startRspamd({ dns: dns.server }), startClamd()])
})

afterAll(async () => {
  await Promise.all([rspamd?.dispose(), clamd?.dispose()])
  await dns?.close()
})

describe("clamd INSTREAM", () => {
  const opts = () => ({ host: "127.0.0.1", port: clamd.port, timeoutMs: 5_000, maxSize: 1_000_000 })

  it("finds EICAR, across chunk boundaries, and passes a clean message", async () => {
    const infected = await ClamdClient.scan({ ...opts(), chunkSize: 7 }, message(`See attached.\r\n${EICAR}\r\n`))
    expect(infected).toMatchObject({ _tag: "Infected", signature: EICAR_SIGNATURE })
    expect(await ClamdClient.scan(opts(), message("Nothing here.\r\n"))).toEqual({ _tag: "Clean", reply: "stream: OK" })
  })

  it("does not send a message over max size", async () => {
    expect(await ClamdClient.scan({ ...opts(), maxSize: 100 }, message("x".repeat(200)))).toMatchObject({
      _tag: "Skipped",
      reason: "too-big"
    })
  })

  it("fails defined ways: refused, silent, garbage, closed mid-reply", async () => {
    const port = await freePort()
    expect(await ClamdClient.scan({ ...opts(), port }, message("a"))).toMatchObject({ _tag: "Failed", reason: "connect" })
    const silent = await misbehaving(() => undefined)
    const garbage = await misbehaving((s) => s.on("data", () => s.end("HTTP/1.1 400 Bad Request\r\n\r\n\0")))
    const half = await misbehaving((s) => s.on("data", () => s.end("stream: Eica")))
    try {
      expect(await ClamdClient.scan({ ...opts(), port: silent.port, timeoutMs: 300 }, message("a"))).toMatchObject({
        _tag: "Failed",
        reason: "timeout"
      })
      expect(await ClamdClient.scan({ ...opts(), port: garbage.port }, message("a"))).toMatchObject({ _tag: "Failed", reason: "garbage" })
      expect(await ClamdClient.scan({ ...opts(), port: half.port }, message("a"))).toMatchObject({ _tag: "Failed", reason: "garbage" })
    } finally {
      await Promise.all([silent.close(), garbage.close(), half.close()])
    }
  })
})

describe("rspamd /checkv2", () => {
  const opts = () => ({ url: rspamd.url, timeoutMs: 5_000 })

  it("rejects GTUBE and scores a clean message with its symbols", async () => {
    const spam = await RspamdClient.check(opts(), envelope, message(`${GTUBE}\r\n`))
    expect(spam).toMatchObject({ _tag: "Checked", action: "reject" })
    const toBoth =
      "From: <a@client.test>\r\nTo: <b@missive.test>, <c@missive.test>\r\nSubject: lunch\r\nMessage-ID: <1@client.test>\r\n\r\nHello.\r\n"
    const clean = await RspamdClient.check(opts(), envelope, Buffer.from(toBoth))
    expect(clean).toMatchObject({ _tag: "Checked", action: "no action" })
    if (clean._tag !== "Checked") throw new Error("unreachable")
    // rspamd saw both envelope recipients (one Rcpt header each): both To: addresses match the envelope.
    expect(clean.symbols.map(([s]) => s)).toContain("TO_MATCH_ENVRCPT_ALL")
  })

  it("fails defined ways: refused, silent, garbage, closed mid-reply, not rspamd's JSON", async () => {
    const port = await freePort()
    expect(await RspamdClient.check({ ...opts(), url: `http://127.0.0.1:${port}` }, envelope, message("a"))).toMatchObject({
      _tag: "Failed",
      reason: "connect"
    })
    const silent = await misbehaving(() => undefined)
    const garbage = await misbehaving((s) => s.on("data", () => s.end("\x00\x01 not http at all\r\n\r\n")))
    const half = await misbehaving((s) =>
      s.once("data", () => s.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"action":"rej'))
    )
    const wrongJson = await misbehaving((s) =>
      s.once("data", () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{"hello":"x"}'))
    )
    const url = (p: number) => `http://127.0.0.1:${p}`
    try {
      expect(await RspamdClient.check({ url: url(silent.port), timeoutMs: 300 }, envelope, message("a"))).toMatchObject({
        _tag: "Failed",
        reason: "timeout"
      })
      expect(await RspamdClient.check({ url: url(garbage.port), timeoutMs: 5_000 }, envelope, message("a"))).toMatchObject({
        _tag: "Failed",
        reason: "garbage"
      })
      expect(await RspamdClient.check({ url: url(half.port), timeoutMs: 5_000 }, envelope, message("a"))).toMatchObject({
        _tag: "Failed",
        reason: "closed"
      })
      expect(await RspamdClient.check({ url: url(wrongJson.port), timeoutMs: 5_000 }, envelope, message("a"))).toMatchObject({
        _tag: "Failed",
        reason: "garbage"
      })
    } finally {
      await Promise.all([silent.close(), garbage.close(), half.close(), wrongJson.close()])
    }
  })
})
