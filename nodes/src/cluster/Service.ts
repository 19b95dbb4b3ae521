// Node-to-node requests over core NATS: every node answers `<prefix>.cluster.status` (a scatter-gather the CLI
// sends with requestMany) and `<prefix>.node.<id>.status`, and takes `<prefix>.node.<id>.drain` (stop accepting,
// finish or hand back its messages, exit). Answers are JSON; must not carry message bodies.
import type { NatsConnection, Subscription } from "@nats-io/transport-node"

export interface NodeStatus {
  readonly node: string
  readonly ports: Readonly<Record<string, number>>
  readonly active: number
  readonly held: number
  readonly partitions: ReadonlyArray<number>
  readonly fenced: { readonly appends: number; readonly deliveries: number }
  readonly alive: ReadonlyArray<string>
}

export interface Service {
  close(): void
}

export const subjectOf = (prefix: string, node: string, what: "status" | "drain"): string =>
  `${prefix}.node.${node.replace(/[^A-Za-z0-9_-]/g, "_")}.${what}`

export const serve = (o: { nc: NatsConnection; prefix: string; node: string; status: () => NodeStatus; drain?: () => void }): Service => {
  const subs: Array<Subscription> = [
    o.nc.subscribe(subjectOf(o.prefix, o.node, "drain"), {
      callback: (_e, m) => {
        m.respond(JSON.stringify({ node: o.node, draining: true }))
        o.drain?.()
      }
    }),
    o.nc.subscribe(`${o.prefix}.cluster.status`, { callback: (_e, m) => void m.respond(JSON.stringify(o.status())) }),
    o.nc.subscribe(`${o.prefix}.node.${o.node.replace(/[^A-Za-z0-9_-]/g, "_")}.status`, {
      callback: (_e, m) => void m.respond(JSON.stringify(o.status()))
    })
  ]
  return {
    close: () => {
      for (const s of subs) s.unsubscribe()
    }
  }
}

/** Asks every node for its status; collects the answers that arrive within `waitMs`. */
export const gather = async (nc: NatsConnection, prefix: string, waitMs = 1000): Promise<ReadonlyArray<NodeStatus>> => {
  const out: Array<NodeStatus> = []
  try {
    const it = await nc.requestMany(`${prefix}.cluster.status`, "", { maxWait: waitMs })
    for await (const m of it) {
      if (m.data.length === 0) continue
      out.push(m.json<NodeStatus>())
    }
  } catch {
    /* no node answered */
  }
  return out
}
