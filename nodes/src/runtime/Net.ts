// Loopback port helpers for whoever starts processes on this host (the cluster launcher, the simulations' cluster
// target, tests): a free port, and waiting until something listens on one. Must not listen beyond what it is given
// and must not keep a socket open: a free port is bound, read and closed at once (another process may take it after).

import { connect, createServer } from "node:net"

/** A port nothing listens on at this moment on `host` (the kernel's pick for port 0). */
export const freePort = (host = "127.0.0.1"): Promise<number> =>
  new Promise((done, fail) => {
    const s = createServer()
    s.once("error", fail)
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port
      s.close(() => done(port))
    })
  })

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
