// Site change notices between cluster nodes: after a node appends a throttle, suspension or resume to a site's stream
// it puts `{site, node, version}` under the site's key in a replicated KV bucket (`<prefix>_sites`), and every node
// watches the bucket's updates and reads that site's stream again (scheduler/Shaping.ts). A notice is only a pointer:
// the log stays the truth, and a node that missed one (it was down) restores from the log at start.
import { Kvm, type KV } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import type { Logger } from "../runtime/Log.js"
import type { Notice, Peers } from "../scheduler/Shaping.js"

export const bucketName = (prefix: string) => `${prefix}_sites`

export const open = async (o: { nc: NatsConnection; prefix: string; replicas: number; log: Logger }): Promise<Peers> => {
  const kv: KV = await new Kvm(o.nc).create(bucketName(o.prefix), { history: 1, replicas: o.replicas })
  const keyOf = (site: string) => `s.${Buffer.from(site).toString("base64url") || "_"}`
  return {
    announce: async (n) => {
      await kv.put(keyOf(n.site), JSON.stringify(n))
    },
    follow: (onNotice) => {
      let stopped = false
      let stop: (() => void) | undefined
      let last = 0
      // Updates only: what was announced before this node started is in the log, which `restore` reads.
      void (async () => {
        for (let wait = 500; !stopped; wait = Math.min(5_000, wait * 2)) {
          try {
            // a watch that broke resumes after the last notice it gave
            const w = await kv.watch(last > 0 ? { resumeFromRevision: last + 1 } : { include: "updates" })
            stop = () => w.stop()
            if (stopped) w.stop()
            for await (const e of w) {
              last = Math.max(last, e.revision)
              if (e.operation !== "PUT") continue
              try {
                onNotice(e.json<Notice>())
              } catch {
                /* not a notice: ignore it */
              }
            }
          } catch (e) {
            o.log("warn", "site notices: watch failed; watching again", { error: String((e as Error)?.message ?? e) })
          }
          if (!stopped) await new Promise((r) => setTimeout(r, wait))
        }
      })()
      return () => {
        stopped = true
        stop?.()
      }
    }
  }
}
