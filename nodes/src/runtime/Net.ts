// Loopback port helpers for whoever starts processes on this host (the cluster launcher, the simulations' cluster
// target, tests): a free port, a port probed with a plain bind, and waiting until something listens on one. Must not listen beyond what it is given
// and must not keep a socket open: a free port is bound, read and closed at once (another process may take it after).

import { readFileSync } from "node:fs"
import { connect, createServer } from "node:net"

/** The kernel's range of ports for outgoing connections (`ip_local_port_range`); Linux's default when unreadable. */
export const ephemeralRange = (): readonly [number, number] => {
  try {
    const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number)
    if (Number.isInteger(lo) && Number.isInteger(hi) && lo! > 0 && hi! >= lo!) return [lo!, hi!]
  } catch {
    // not Linux, or no /proc
  }
  return [32768, 60999]
}

/** Lowest port freePort picks from: above the well-known and registered services most machines run. */
const LOWEST = 10_000

/**
 * Listens on `host:port` (0: the kernel's pick) with a plain bind (no SO_REUSEPORT), closes at once and resolves with the port
 * bound; rejects with the listen's error (EADDRINUSE when something holds the port).
 */
export const probePort = (host: string, port: number): Promise<number> =>
  new Promise((done, fail) => {
    const s = createServer()
    s.once("error", fail)
    s.listen(port, host, () => {
      const bound = (s.address() as { port: number }).port
      s.close(() => done(bound))
    })
  })

/**
 * A port nothing listens on at this moment on `host`, below the kernel's ephemeral range: a port the kernel picks for
 * port 0 comes from that range, and any outgoing connection made before the caller listens on it (a cluster node's
 * to NATS, another test's) may take it as its local port, which fails the listen with EADDRINUSE — seen in CI. Below
 * the range only an explicit bind can take it. The kernel's pick when the range leaves no room below it.
 */
export const freePort = async (host = "127.0.0.1"): Promise<number> => {
  const [lo] = ephemeralRange()
  if (lo - LOWEST >= 1000)
    for (let i = 0; i < 50; i++) {
      const port = LOWEST + Math.floor(Math.random() * (lo - LOWEST))
      if (
        await probePort(host, port).then(
          () => true,
          () => false
        )
      )
        return port
    }
  return probePort(host, 0)
}

export interface WaitPortOptions {
  /** Milliseconds before it gives up. */
  readonly ms: number
  /** False once the process that should listen has ended: it fails at once instead of waiting out `ms`. */
  readonly alive?: () => boolean
  /** What should listen, for the error message ("nats-server s1 (log …)"). */
  readonly what?: string
  readonly host?: string
}

/** Resolves once a TCP connection to `host:port` succeeds (polls every 100 ms). */
export const waitPort = async (port: number, o: WaitPortOptions): Promise<void> => {
  const host = o.host ?? "127.0.0.1"
  const what = o.what ?? "the process"
  const deadline = Date.now() + o.ms
  for (;;) {
    if (o.alive && !o.alive()) throw new Error(`${what} exited before listening on ${port}`)
    const ok = await new Promise<boolean>((done) => {
      const s = connect(port, host)
      s.once("connect", () => {
        s.destroy()
        done(true)
      })
      s.once("error", () => done(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`${what}: nothing listens on ${port} after ${o.ms} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
