// The operator channel of a node: a Unix socket in the data directory (owner-only) taking one JSON request per
// line ({"op":"hold","id":"…","by":"…"}) and answering one JSON line. Local processes with file access only;
// it changes messages solely through the actor host, which records who asked in the event.
import { chmodSync, rmSync } from "node:fs"
import { createServer, connect, type Server } from "node:net"
import type { Host, Operation } from "../scheduler/Host.js"

const OPS: ReadonlyArray<Operation> = ["hold", "release", "retry", "delete", "bounce"]

export const socketPath = (dataDir: string): string => `${dataDir}/missive.sock`

/** Another part of the node's requests on the same socket (the suppression list): undefined when not its own. */
export type Extra = (req: Record<string, unknown>) => Promise<object | undefined>

export const startAdmin = async (dataDir: string, host: Host, extra?: Extra): Promise<{ close: () => Promise<void> }> => {
  const path = socketPath(dataDir)
  rmSync(path, { force: true })
  const server: Server = createServer((sock) => {
    let buf = ""
    sock.setEncoding("utf8")
    sock.on("error", () => {})
    sock.on("data", (chunk: string) => {
      buf += chunk
      // An import of a suppression list is one request: up to 16 MiB.
      if (buf.length > 16 << 20) return void sock.destroy()
      const nl = buf.indexOf("\n")
      if (nl < 0) return
      const line = buf.slice(0, nl)
      buf = ""
      void (async () => {
        let req: { op?: unknown; id?: unknown; by?: unknown }
        try {
          req = JSON.parse(line)
        } catch {
          return sock.end(JSON.stringify({ ok: false, error: "bad request: not JSON" }) + "\n")
        }
        const other = extra
          ? await extra(req as Record<string, unknown>).catch((e: unknown) => ({ ok: false, error: String(e) }))
          : undefined
        if (other !== undefined) return sock.end(JSON.stringify(other) + "\n")
        const op = req.op as Operation
        if (!OPS.includes(op) || typeof req.id !== "string" || !/^[0-9A-Z]{10,40}$/i.test(req.id))
          return sock.end(JSON.stringify({ ok: false, error: "bad request: need op (hold|release|retry|delete|bounce) and id" }) + "\n")
        const by = typeof req.by === "string" && req.by.length <= 100 ? req.by : "operator"
        const r = await host.operate(req.id, op, by).catch((e: unknown) => ({ ok: false as const, error: String(e) }))
        sock.end(JSON.stringify(r) + "\n")
      })()
    })
  })
  await new Promise<void>((done, fail) => {
    server.once("error", fail)
    server.listen(path, () => done())
  })
  chmodSync(path, 0o600)
  return {
    close: () =>
      new Promise<void>((done) =>
        server.close(() => {
          rmSync(path, { force: true })
          done()
        })
      )
  }
}

export const request = (
  dataDir: string,
  req:
    | { op: Operation; id: string; by: string }
    | { op: "suppression"; action: "add" | "remove"; addresses: Array<string>; reason?: string; by: string }
): Promise<{ ok: boolean; error?: string; events?: Array<string>; count?: number }> =>
  new Promise((done, fail) => {
    const sock = connect(socketPath(dataDir))
    let buf = ""
    sock.setEncoding("utf8")
    sock.on("error", (e) => fail(new Error(`cannot reach the node at ${socketPath(dataDir)} (is it running?): ${e.message}`)))
    sock.on("data", (c: string) => {
      buf += c
    })
    sock.on("end", () => {
      try {
        done(JSON.parse(buf))
      } catch {
        fail(new Error(`bad answer from node: ${buf}`))
      }
    })
    sock.write(JSON.stringify(req) + "\n")
  })
