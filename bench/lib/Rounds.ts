// Alternating rounds of two configurations of one node under the relay load, for the benchmarks that price a feature
// (metrics, shaping): each round on a fresh data directory, A then B, so both see the same drift of a shared machine.
import { mkdtempSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { cpuMs, freePort, startChild } from "../../test/src/Support.js"
import { load, startRelay, type RelayNode } from "../relay.bench.js"

export interface Round {
  readonly perSecond: number
  readonly cpuPerMsg: number
}

export interface Side<R extends Round> {
  readonly name: string
  /** The node's configuration beyond the relay defaults (ports given: `smtp`, and `http` for an admin listener). */
  readonly config: (ports: { smtp: number; http: number; sinkPort: number }) => Record<string, unknown>
  /** Runs beside the load (e.g. a scraper); returns what to add to the round and its stop. */
  readonly during?: (node: RelayNode, ports: { smtp: number; http: number }) => { stop: () => Omit<R, keyof Round> }
}

export const median = (xs: ReadonlyArray<number>): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** `rounds` × (A, B): msgs/s and node CPU per message of each round. */
export const alternate = async <A extends Round, B extends Round>(
  a: Side<A>,
  b: Side<B>,
  o: { readonly messages: number; readonly rounds: number }
): Promise<{ a: Array<A>; b: Array<B>; load: number }> => {
  const sinkPort = await freePort()
  const sink = await startChild("smtp-sink", ["-u", "nobody", `127.0.0.1:${sinkPort}`, "1024"], () => true)
  const round = async <R extends Round>(side: Side<R>): Promise<R> => {
    const dir = mkdtempSync(join(tmpdir(), "missive-bench-rounds-"))
    const ports = { smtp: await freePort(), http: await freePort() }
    const node = await startRelay(dir, sinkPort, side.config({ ...ports, sinkPort }))
    const extra = side.during?.(node, ports)
    try {
      const cpu0 = cpuMs(node.child.proc.pid!)
      const ms = await load(node, { messages: o.messages, size: 4096, port: ports.smtp })
      const r = { perSecond: (o.messages * 1000) / ms, cpuPerMsg: (cpuMs(node.child.proc.pid!) - cpu0) / o.messages }
      return { ...r, ...(extra?.stop() ?? {}) } as R
    } finally {
      await node.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  const as: Array<A> = []
  const bs: Array<B> = []
  try {
    for (let i = 0; i < o.rounds; i++) {
      as.push(await round(a))
      bs.push(await round(b))
    }
  } finally {
    await sink.stop()
  }
  return { a: as, b: bs, load: loadavg()[0]! }
}

/** A table row: each round's msgs/s and CPU per message, and their medians. */
export const row = (name: string, rs: ReadonlyArray<Round>): string =>
  `| ${name} | ${rs.map((r) => r.perSecond.toFixed(0)).join(" / ")} | ${median(rs.map((r) => r.perSecond)).toFixed(0)} | ${rs.map((r) => r.cpuPerMsg.toFixed(3)).join(" / ")} | ${median(rs.map((r) => r.cpuPerMsg)).toFixed(3)} |`

/** "+1.2 % CPU per message, -0.4 % throughput (medians)" of B against A. */
export const delta = (a: ReadonlyArray<Round>, b: ReadonlyArray<Round>): string => {
  const sign = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)}`
  const cpu = (median(b.map((r) => r.cpuPerMsg)) / median(a.map((r) => r.cpuPerMsg)) - 1) * 100
  const rate = (median(b.map((r) => r.perSecond)) / median(a.map((r) => r.perSecond)) - 1) * 100
  return `${sign(cpu)} % CPU per message, ${sign(rate)} % throughput (medians)`
}
