import { readFileSync } from "node:fs"
import { connect, createServer, type Server } from "node:net"
import { describe, expect, it } from "vitest"
import { ephemeralRange, freePort } from "../src/runtime/Net.js"

const listen = (port: number): Promise<Server> =>
  new Promise((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(port, "127.0.0.1", () => resolve(s))
  })

describe("freePort", () => {
  it("reads the kernel's ephemeral range", () => {
    const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number)
    expect(ephemeralRange()).toEqual([lo, hi])
  })

  it("picks a port below the ephemeral range, free to listen on, different from call to call", async () => {
    const [lo] = ephemeralRange()
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()))
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(10_000)
      expect(port).toBeLessThan(lo)
    }
    expect(new Set(ports).size).toBeGreaterThan(15)
    const s = await listen(ports[0]!)
    await new Promise((r) => s.close(r))
  })

  it("so an outgoing connection cannot take it first: the local port of a connection blocks a listen on it", async () => {
    // Why the range matters: the kernel's pick for port 0 is an ephemeral port, and a client socket holding one as its
    // local end makes a later listen on it fail.
    const server = await listen(0)
    const client = connect((server.address() as { port: number }).port, "127.0.0.1")
    await new Promise((r) => client.once("connect", r))
    const [lo, hi] = ephemeralRange()
    expect(client.localPort).toBeGreaterThanOrEqual(lo)
    expect(client.localPort).toBeLessThanOrEqual(hi)
    await expect(listen(client.localPort!)).rejects.toMatchObject({ code: "EADDRINUSE" })
    client.destroy()
    await new Promise((r) => server.close(r))
  })
})
