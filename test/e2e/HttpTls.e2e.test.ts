// The admin listener over TLS (`listeners.http.tls: true`): HTTPS with the node's certificate (the same `tls` pair as
// the SMTP listeners; here the self-signed one generated into data_dir/tls), plain HTTP refused on that port.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readFileSync } from "node:fs"
import { request } from "node:https"
import { connect } from "node:net"
import { join } from "node:path"
import { X509Certificate } from "node:crypto"
import { freePort, spawnNode, tempDir, testConfig, writeConfig, type ChildNode } from "../src/Harness.js"
import { Http } from "@missive/node"

const TOKEN = "tls-read-token-0123456789"

const get = (port: number, path: string, token?: string): Promise<{ status: number; body: string; cert: string }> =>
  new Promise((done, fail) => {
    const req = request(
      { host: "127.0.0.1", port, path, rejectUnauthorized: false, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        let body = ""
        const cert = (res.socket as unknown as { getPeerX509Certificate(): X509Certificate }).getPeerX509Certificate().fingerprint256
        res.on("data", (c: Buffer) => void (body += c.toString()))
        res.on("end", () => done({ status: res.statusCode ?? 0, body, cert }))
      }
    )
    req.on("error", fail)
    req.end()
  })

describe("the admin listener over TLS", () => {
  const dir = tempDir()
  let node: ChildNode
  let port: number

  beforeAll(async () => {
    port = await freePort()
    const config = testConfig(dir.path, {
      listeners: { smtp: { port: await freePort() }, submission: { enabled: false }, http: { port, tls: true } },
      http: { tokens: [{ name: "tls-reader", scope: "read", hash: Http.hashToken(TOKEN) }] }
    })
    node = await spawnNode(writeConfig(dir.path, config))
  })

  afterAll(async () => {
    await node?.stop()
    dir.remove()
  })

  it("serves HTTPS with the node's certificate and refuses plain HTTP", async () => {
    const health = await get(port, "/healthz")
    expect(health.status).toBe(200)
    expect(JSON.parse(health.body)).toEqual({ status: "ok", node: "test-node" })
    const generated = new X509Certificate(readFileSync(join(dir.path, "tls/cert.pem"))).fingerprint256
    expect(health.cert).toBe(generated)
    expect((await get(port, "/api/v1/queue")).status).toBe(401)
    const queue = await get(port, "/api/v1/queue", TOKEN)
    expect(queue.status).toBe(200)
    expect(JSON.parse(queue.body).messages).toEqual([])
    const plain = await new Promise<string>((done) => {
      const s = connect(port, "127.0.0.1")
      let got = ""
      s.on("data", (b: Buffer) => void (got += b.toString("latin1")))
      s.on("error", () => done(got))
      s.on("close", () => done(got))
      s.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    })
    expect(plain).not.toContain('"status":"ok"')
  })
})
