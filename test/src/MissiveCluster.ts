// A cluster of real Missive node processes (for kill -9, SIGSTOP) on a NATS JetStream cluster from Nats.ts:
// node k listens on its own loopback SMTP port, is `node-k` in the log and EHLOs as `nk.missive.test`, so a sink
// can tell which node delivered. Loopback only.
import { join } from "node:path"
import { writeFileSync } from "node:fs"
import { stringify } from "yaml"
import { freePort, spawnNode, testConfig, type ChildNode } from "./Harness.js"

export interface MissiveNode {
  readonly name: string
  readonly helo: string
  readonly port: number
  proc(): ChildNode | undefined
  start(): Promise<void>
  kill9(): Promise<void>
  stop(): Promise<void>
  pause(): void
  resume(): void
}

export interface MissiveCluster {
  readonly nodes: ReadonlyArray<MissiveNode>
  stop(): Promise<void>
}

export const startMissiveCluster = async (o: {
  dir: string
  nats: ReadonlyArray<string>
  size?: number
  sinkPort: number
  lease?: string
  /** More configuration for every node, or per node (k = 1, 2, 3 …). */
  extra?: Record<string, unknown> | ((k: number) => Record<string, unknown>)
}): Promise<MissiveCluster> => {
  const nodes: Array<MissiveNode> = []
  for (let k = 1; k <= (o.size ?? 3); k++) {
    const port = await freePort()
    const dataDir = join(o.dir, `node-${k}`)
    const helo = `n${k}.missive.test`
    const path = writeConfigAs(
      o.dir,
      `node-${k}.yaml`,
      testConfig(dataDir, {
        hostname: helo,
        node_id: `node-${k}`,
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        routes: { "sink.test": `127.0.0.1:${o.sinkPort}` },
        relay: { relay_domains: ["sink.test"] },
        cluster: { nats: [...o.nats], lease: o.lease ?? "3s" },
        ...(typeof o.extra === "function" ? o.extra(k) : (o.extra ?? {}))
      })
    )
    let child: ChildNode | undefined
    nodes.push({
      name: `node-${k}`,
      helo,
      port,
      proc: () => child,
      start: async () => {
        child = await spawnNode(path)
      },
      kill9: async () => {
        await child?.kill9()
        child = undefined
      },
      stop: async () => {
        await child?.stop()
        child = undefined
      },
      pause: () => void child?.proc.kill("SIGSTOP"),
      resume: () => void child?.proc.kill("SIGCONT")
    })
  }
  await Promise.all(nodes.map((n) => n.start()))
  return {
    nodes,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()))
    }
  }
}

const writeConfigAs = (dir: string, name: string, config: Record<string, unknown>): string => {
  const path = join(dir, name)
  writeFileSync(path, stringify(config))
  return path
}
