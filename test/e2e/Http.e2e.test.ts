// The admin HTTP listener of a real node process (bin/missive.mjs start): every endpoint of nodes/openapi.json called
// over real HTTP, token scopes, hostile input (no token, bad tokens in a loop, malformed and oversized JSON, slow
// clients) answered with precise JSON errors while the node keeps relaying, injection answered per recipient through
// the same intake as SMTP, and /metrics scraped after real traffic.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readFileSync } from "node:fs"
import { connect } from "node:net"
import { join } from "node:path"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { freePort, rawMessage, ROOT, send, spawnNode, tempDir, testConfig, waitFor, writeConfig, type ChildNode } from "../src/Harness.js"
import { Http } from "@missive/node"

const TOKENS = { read: "read-secret-0123456789", inject: "inject-secret-0123456789", admin: "admin-secret-0123456789" }

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly json: any
}

describe("HTTP API on a running node", () => {
  const dir = tempDir()
  let capture: CaptureServer
  let node: ChildNode
  let smtp: number
  let base: string

  const call = async (
    method: string,
    path: string,
    o: { token?: string; body?: unknown; raw?: string; type?: string } = {}
  ): Promise<Answer> => {
    const headers: Record<string, string> = {}
    if (o.token !== undefined) headers["authorization"] = `Bearer ${o.token}`
    let body: string | undefined
    if (o.body !== undefined || o.raw !== undefined) {
      body = o.raw ?? JSON.stringify(o.body)
      headers["content-type"] = o.type ?? "application/json"
    }
    const r = await fetch(`${base}${path}`, { method, headers, body, redirect: "manual" })
    const text = await r.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: r.status, headers: r.headers, text, json }
  }

  /** A message to dead.test: its recipient is deferred (451) until the test acts on it. */
  const deferred = async (tag: string): Promise<string> => {
    const r = await call("POST", "/api/v1/messages", {
      token: TOKENS.inject,
      body: {
        envelope: { from: "ops@sender.test", to: [`${tag}@dead.test`] },
        raw: rawMessage({ from: "ops@sender.test", to: `${tag}@dead.test`, subject: tag })
      }
    })
    expect(r.status, r.text).toBe(200)
    return r.json.id as string
  }

  beforeAll(async () => {
    capture = await startCapture({ onRcpt: (r) => (r.endsWith("@dead.test") ? { code: 451, text: "4.7.1 try again later" } : undefined) })
    smtp = await freePort()
    const http = await freePort()
    base = `http://127.0.0.1:${http}`
    const config = testConfig(dir.path, {
      listeners: { smtp: { port: smtp }, submission: { enabled: false }, http: { port: http } },
      routes: { "remote.test": `127.0.0.1:${capture.port}`, "dead.test": `127.0.0.1:${capture.port}` },
      relay: { trusted_networks: ["127.0.0.0/8"] },
      http: {
        tokens: [
          { name: "grafana", scope: "read", hash: Http.hashToken(TOKENS.read) },
          { name: "app", scope: "inject", hash: Http.hashToken(TOKENS.inject) },
          { name: "ops-admin", scope: "admin", hash: Http.hashToken(TOKENS.admin) }
        ],
        max_body: "2MB",
        request_timeout: "2s"
      }
    })
    node = await spawnNode(writeConfig(dir.path, config))
    await waitFor("the http listener", async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok)
  })

  afterAll(async () => {
    await node?.stop()
    await capture?.close()
    dir.remove()
  })

  it("answers every endpoint of its OpenAPI document with a documented status", async () => {
    const doc = JSON.parse(readFileSync(join(ROOT, "nodes/openapi.json"), "utf8"))
    const served = await call("GET", "/openapi.json")
    expect(served.json).toEqual(doc)
    const called: Array<string> = []
    for (const [path, ops] of Object.entries<Record<string, any>>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(ops)) {
        const needs = op.security.length > 0
        let url = path
        if (path.includes("{id}")) url = path.replace("{id}", await deferred(`openapi${op.operationId}`))
        if (op.operationId === "search") url += "?q=dead.test"
        if (op.operationId === "release") await call("POST", url.replace("/release", "/hold"), { token: TOKENS.admin })
        let r: Answer
        if (op.operationId === "eventStream") {
          const ctl = new AbortController()
          const res = await fetch(`${base}${url}`, { headers: { authorization: `Bearer ${TOKENS.read}` }, signal: ctl.signal })
          const reader = res.body!.getReader()
          const first = new TextDecoder().decode((await reader.read()).value)
          ctl.abort()
          expect(res.headers.get("content-type")).toContain("text/event-stream")
          expect(first).toContain("retry:")
          r = { status: res.status, headers: res.headers, text: first, json: undefined }
        } else if (op.operationId === "inject") {
          r = await call("POST", url, {
            token: TOKENS.inject,
            body: { envelope: { from: "a@sender.test", to: ["one@remote.test"] }, raw: "Subject: openapi\n\nhello\n" }
          })
        } else if (op.operationId === "suppressionAdd" || op.operationId === "suppressionRemove") {
          // Added first, then removed: the paths come in that order in the document.
          r = await call("POST", url, { token: TOKENS.admin, body: { addresses: ["listed@remote.test"], reason: "manual" } })
        } else r = await call(method.toUpperCase(), url, { token: needs ? TOKENS.admin : undefined })
        expect(Object.keys(op.responses), `${method} ${url}: ${r.status} ${r.text.slice(0, 200)}`).toContain(String(r.status))
        expect(r.status, `${method} ${url}: ${r.text.slice(0, 200)}`).toBeLessThan(400)
        if (needs) expect((await call(method.toUpperCase(), url)).status, `${method} ${url} without a token`).toBe(401)
        called.push(`${method} ${path}`)
      }
    }
    expect(called.length).toBeGreaterThanOrEqual(20)
  })

  it("runs operator commands through the CLI's command handler, recorded with the token's name", async () => {
    const id = await deferred("held")
    const hold = await call("POST", `/api/v1/messages/${id}/hold`, { token: TOKENS.admin })
    expect(hold.json).toEqual({ id, op: "hold", by: "ops-admin", events: ["MessageHeld"] })
    const other = await deferred("notheld")
    const notHeld = await call("POST", `/api/v1/messages/${other}/release`, { token: TOKENS.admin })
    expect(notHeld.status).toBe(409)
    expect(notHeld.json.error).toMatchObject({ code: "refused", message: `release ${other} refused: NotHeld` })
    const timeline = await call("GET", `/api/v1/messages/${id}`, { token: TOKENS.read })
    const held = timeline.json.entries.find((e: any) => e.type === "MessageHeld")
    expect(held.event.by).toBe("ops-admin")
    expect(timeline.json.state.held).toBe(true)
    const queue = await call("GET", "/api/v1/queue?limit=1000", { token: TOKENS.read })
    expect(queue.json.messages.find((m: any) => m.id === id)).toMatchObject({ id, held: true, sender: "ops@sender.test" })
    const del = await call("POST", `/api/v1/messages/${id}/delete`, { token: TOKENS.admin })
    expect(del.json.events).toContain("MessageDeleted")
    expect((await call("POST", `/api/v1/messages/01NOSUCHMESSAGE0000000000/hold`, { token: TOKENS.admin })).status).toBe(404)
    expect((await call("POST", `/api/v1/messages/not-an-id/hold`, { token: TOKENS.admin })).json.error.code).toBe("invalid_id")
  })

  it("refuses by token and scope, with precise JSON errors", async () => {
    const none = await call("GET", "/api/v1/queue")
    expect(none.status).toBe(401)
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="missive"')
    expect(none.json.error).toEqual({
      status: 401,
      code: "no_token",
      message: "this endpoint needs a bearer token (Authorization: Bearer …)"
    })
    const basic = await fetch(`${base}/api/v1/queue`, { headers: { authorization: "Basic dXNlcjpwYXNz" } })
    expect(((await basic.json()) as any).error.code).toBe("bad_authorization")
    for (let i = 0; i < 300; i++) {
      const r = await call("GET", "/metrics", { token: `guess-${i}-${"x".repeat(i % 50)}` })
      expect(r.status).toBe(401)
      expect(r.json.error.code).toBe("invalid_token")
    }
    const readHold = await call("POST", "/api/v1/messages/01NOSUCHMESSAGE0000000000/hold", { token: TOKENS.read })
    expect(readHold.status).toBe(403)
    expect(readHold.json.error.message).toBe('token "grafana" has scope read; this endpoint needs admin')
    expect((await call("GET", "/api/v1/queue", { token: TOKENS.inject })).status).toBe(403)
    expect((await call("POST", "/api/v1/messages", { token: TOKENS.read, body: {} })).status).toBe(403)
    expect((await call("GET", "/api/v1/nothing", { token: TOKENS.read })).json.error.code).toBe("not_found")
    const wrongMethod = await call("DELETE", "/api/v1/queue", { token: TOKENS.read })
    expect(wrongMethod.status).toBe(405)
    expect(wrongMethod.headers.get("allow")).toBe("GET")
    const config = await call("GET", "/api/v1/config", { token: TOKENS.read })
    expect(config.json.http.tokens.map((t: any) => t.hash)).toEqual(["[redacted]", "[redacted]", "[redacted]"])
    expect(config.text).not.toContain(Http.hashToken(TOKENS.admin).slice(7))
  })

  it("answers malformed, oversized and slow requests precisely, and keeps relaying", async () => {
    const malformed = await call("POST", "/api/v1/messages", { token: TOKENS.inject, raw: '{"envelope": {"from": "a@b.test",' })
    expect(malformed.status).toBe(400)
    expect(malformed.json.error.code).toBe("malformed_json")
    expect(malformed.json.error.message).toMatch(/^the request body is not valid JSON: /)
    const wrongType = await call("POST", "/api/v1/messages", { token: TOKENS.inject, raw: "{}", type: "text/plain" })
    expect(wrongType.json.error).toMatchObject({ status: 415, code: "unsupported_media_type" })
    const notObject = await call("POST", "/api/v1/messages", { token: TOKENS.inject, body: [1, 2] })
    expect(notObject.json.error.message).toBe("expected a JSON object, got an array")
    const badField = await call("POST", "/api/v1/messages", { token: TOKENS.inject, body: { envelope: { from: 7, to: [] }, raw: "x" } })
    expect(badField.json.error.message).toBe('envelope.from: expected an address ("" for the null sender), got 7')
    const badHeader = await call("POST", "/api/v1/messages", {
      token: TOKENS.inject,
      body: { envelope: { from: "a@sender.test", to: ["b@remote.test"] }, raw: "no header here\n\nbody" }
    })
    expect(badHeader.json.error.code).toBe("invalid_message")
    // Declared too large: refused from Content-Length, before the body is read. (A client such as fetch that writes the
    // whole body regardless may see its write cut instead of the answer, as with any server that refuses early.)
    const port = Number(new URL(base).port)
    const big = await rawRequest(
      port,
      `POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKENS.inject}\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n`,
      ['{"raw":"xxxx']
    )
    expect(big).toMatch(/^HTTP\/1.1 413 /)
    expect(big).toContain('"code":"body_too_large"')
    // Chunked, without a Content-Length: cut off while streaming.
    const chunked = await rawRequest(
      port,
      `POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKENS.inject}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      Array.from({ length: 40 }, () => `10000\r\n${"y".repeat(0x10000)}\r\n`)
    )
    expect(chunked).toMatch(/^HTTP\/1.1 413 /)
    expect(chunked).toContain('"code":"body_too_large"')
    // A slow client: headers, then part of the body, then nothing; answered 408 within the request timeout.
    const slow = await rawRequest(
      port,
      `POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKENS.inject}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"envelope":`,
      []
    )
    expect(slow).toMatch(/^HTTP\/1.1 408 /)
    expect(slow).toContain('"code":"request_timeout"')
    // Slow headers (never finished): the node closes the connection.
    const slowHeaders = await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: x\r\n`, [])
    expect(slowHeaders).toMatch(/^HTTP\/1.1 408 /)
    expect(slowHeaders).toContain('"code":"request_timeout"')
    // A flood of parallel bad requests, then SMTP still relays and the API still answers.
    await Promise.all(Array.from({ length: 200 }, (_, i) => call("POST", "/api/v1/messages", { token: TOKENS.inject, raw: `{${i}` })))
    const sent = await send(
      smtp,
      { from: "a@sender.test", to: ["after-abuse@remote.test"] },
      rawMessage({ from: "a@sender.test", to: "after-abuse@remote.test", subject: "after" })
    )
    expect(sent.ok, sent.response).toBe(true)
    await waitFor("delivery after the abuse", () => capture.messages.some((m) => m.to.includes("after-abuse@remote.test")))
    expect((await call("GET", "/readyz")).json.status).toBe("ready")
  })

  it("injects raw and structured messages with thousands of recipients, answering per recipient", async () => {
    const to = Array.from({ length: 2000 }, (_, i) => `r${i}@remote.test`)
    const r = await call("POST", "/api/v1/messages", {
      token: TOKENS.inject,
      body: {
        envelope: { from: "bulk@sender.test", to: [...to, "not an address", "r1@remote.test"] },
        raw: "From: <bulk@sender.test>\nTo: <list@remote.test>\nSubject: many\n\nHello all.\n"
      }
    })
    expect(r.status, r.text.slice(0, 300)).toBe(200)
    expect(r.json.queued).toBe(true)
    expect(r.json.reply).toMatch(/^250 /)
    expect(r.json.recipients).toHaveLength(2002)
    expect(r.json.recipients.filter((a: any) => a.status === "queued")).toHaveLength(2000)
    expect(r.json.recipients[2000]).toMatchObject({ recipient: "not an address", status: "rejected", code: 501, enhanced: "5.1.3" })
    expect(r.json.recipients[2001]).toMatchObject({ recipient: "r1@remote.test", status: "rejected", message: "duplicate recipient" })
    const id = r.json.id as string
    await waitFor(
      "2000 recipients delivered",
      () => capture.messages.filter((m) => m.raw.toString().includes("Subject: many")).flatMap((m) => m.to).length >= 2000,
      60_000
    )
    const got = capture.messages.find((m) => m.raw.toString().includes("Subject: many"))!
    expect(got.raw.toString()).toContain(`Received: from http-api`)
    expect(got.raw.toString()).toContain("\r\nHello all.\r\n")
    const tl = await call("GET", `/api/v1/messages/${id}`, { token: TOKENS.read })
    expect(tl.json.entries[0].event.client).toMatchObject({ helo: "http-api", user: "app" })

    const s = await call("POST", "/api/v1/messages", {
      token: TOKENS.inject,
      body: {
        content: {
          from: "Ops <ops@sender.test>",
          to: ["Ann <ann@remote.test>"],
          bcc: ["hidden@remote.test"],
          subject: "Structured é",
          text: "plain part",
          html: "<p>html part</p>",
          headers: { "X-Campaign": "c1" }
        }
      }
    })
    expect(s.status, s.text).toBe(200)
    expect(s.json.recipients.map((a: any) => a.recipient)).toEqual(["ann@remote.test", "hidden@remote.test"])
    await waitFor("structured delivered", () => capture.messages.find((m) => m.to.includes("ann@remote.test")))
    const m = capture.messages.find((m) => m.to.includes("ann@remote.test"))!.raw.toString()
    expect(m).toContain("multipart/alternative")
    expect(m).toContain("X-Campaign: c1")
    expect(m).toContain("plain part")
    expect(m).not.toContain("hidden@remote.test\r\n")
    expect(m).not.toMatch(/^Bcc:/im)
    const none = await call("POST", "/api/v1/messages", {
      token: TOKENS.inject,
      body: { envelope: { from: "", to: ["bad"] }, raw: "Subject: x\n\nx" }
    })
    expect(none.status).toBe(422)
    expect(none.json.recipients[0].status).toBe("rejected")
  })

  it("exposes Prometheus metrics derived from the event log after real traffic", async () => {
    const before = parseMetrics((await call("GET", "/metrics", { token: TOKENS.read })).text)
    const n = 5
    for (let i = 0; i < n; i++) {
      const r = await send(
        smtp,
        { from: "m@sender.test", to: [`metric${i}@remote.test`] },
        rawMessage({ from: "m@sender.test", to: `metric${i}@remote.test`, subject: `metric${i}` })
      )
      expect(r.ok, r.response).toBe(true)
    }
    const id = await deferred("metricdefer")
    await waitFor("deliveries", () => capture.messages.filter((m) => m.to.some((t) => t.startsWith("metric"))).length >= n)
    const tl = await call("GET", `/api/v1/messages/${id}`, { token: TOKENS.read })
    await waitFor("a deferral", async () =>
      (await call("GET", `/api/v1/messages/${id}`, { token: TOKENS.read })).json.entries.some((e: any) => e.type === "AttemptDeferred")
    )
    const dest = (await call("GET", `/api/v1/messages/${id}`, { token: TOKENS.read })).json.entries.find(
      (e: any) => e.type === "AttemptStarted"
    ).event.destination as string
    expect(tl.status).toBe(200)
    const after = await waitFor("metrics to show the traffic", async () => {
      const m = parseMetrics((await call("GET", "/metrics", { token: TOKENS.read })).text)
      return value(m, "missive_delivered_total", { destination: dest }) - value(before, "missive_delivered_total", { destination: dest }) >=
        n
        ? m
        : undefined
    })
    const res = await call("GET", "/metrics", { token: TOKENS.read })
    expect(res.headers.get("content-type")).toContain("text/plain")
    expect(value(after, "missive_received_total", {}) - value(before, "missive_received_total", {})).toBeGreaterThanOrEqual(n + 1)
    expect(
      value(after, "missive_delivered_total", { destination: dest }) - value(before, "missive_delivered_total", { destination: dest })
    ).toBe(n)
    expect(value(after, "missive_deferred_total", { destination: dest })).toBeGreaterThanOrEqual(1)
    expect(value(after, "missive_attempts_total", { destination: dest, class: "4xx" })).toBeGreaterThanOrEqual(1)
    expect(value(after, "missive_attempts_total", { destination: dest, class: "2xx" })).toBeGreaterThanOrEqual(n)
    expect(value(after, "missive_queue_messages", { destination: dest })).toBeGreaterThanOrEqual(1)
    expect(value(after, "missive_queue_oldest_age_seconds", { destination: dest })).toBeGreaterThan(0)
    expect(
      value(after, "missive_connections_total", { direction: "in" }) - value(before, "missive_connections_total", { direction: "in" })
    ).toBeGreaterThanOrEqual(n)
    expect(value(after, "missive_store_commit_seconds_count", {})).toBeGreaterThan(value(before, "missive_store_commit_seconds_count", {}))
    expect(value(after, "missive_store_commit_writes_sum", {})).toBeGreaterThanOrEqual(
      value(after, "missive_store_commit_writes_count", {})
    )
    expect(value(after, "missive_events_total", { type: "RecipientDelivered" })).toBeGreaterThanOrEqual(n)
  })
})

/** One raw HTTP/1.1 exchange: writes `head`, then each chunk, and returns what the server sent until it closed. */
const rawRequest = (port: number, head: string, chunks: ReadonlyArray<string>): Promise<string> =>
  new Promise((done) => {
    const sock = connect(port, "127.0.0.1")
    let got = ""
    const give = setTimeout(() => sock.destroy(), 15_000)
    sock.on("data", (b: Buffer) => {
      got += b.toString("latin1")
    })
    sock.on("error", () => {})
    sock.on("close", () => {
      clearTimeout(give)
      done(got)
    })
    sock.write(head)
    for (const c of chunks) if (!sock.destroyed) sock.write(c)
  })

const parseMetrics = (text: string): Map<string, number> => {
  const out = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (m) out.set(m[1]!, Number(m[2]))
  }
  return out
}

const value = (m: Map<string, number>, name: string, labels: Record<string, string>): number => {
  const want = Object.entries(labels)
  for (const [k, v] of m) {
    const [, n, l] = /^([^{]+)(?:\{(.*)\})?$/.exec(k)!
    if (n !== name) continue
    const have = new Map([...(l ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]))
    if (want.every(([a, b]) => have.get(a) === b) && want.length === have.size) return v
  }
  return 0
}
