// `missive cluster drain NODE`: asks one node of a running cluster to drain — stop accepting SMTP, finish its
// deliveries in progress, hand every other message it holds back to its peers, and exit 0 — and waits until it is
// gone from the cluster. Must not touch messages itself; the node does the work.
import { Service } from "@missive/node"
import type { NatsConnection } from "@nats-io/transport-node"

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** 0 when the node drained and left within `timeoutMs`; 1 when it did not answer or did not leave. */
export const drain = async (
  nc: NatsConnection,
  prefix: string,
  node: string,
  timeoutMs: number,
  out: (s: string) => void,
  err: (s: string) => void
): Promise<number> => {
  try {
    await nc.request(Service.subjectOf(prefix, node, "drain"), "", { timeout: 5_000 })
  } catch (e) {
    err(
      `missive: node ${node} did not answer the drain request (${String((e as Error)?.message ?? e)}); is it running, and is the prefix "${prefix}"?`
    )
    return 1
  }
  out(`${node}: draining (intake stopped; finishing deliveries, handing back the rest)`)
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    await sleep(250)
    const alive = await nc.request(Service.subjectOf(prefix, node, "status"), "", { timeout: 1_000 }).then(
      () => true,
      () => false
    )
    if (!alive) {
      out(`${node}: drained and stopped`)
      return 0
    }
  }
  err(`missive: node ${node} still answers after ${Math.round(timeoutMs / 1000)} s of draining`)
  return 1
}
