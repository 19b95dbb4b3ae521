// Spreads the cluster's raft leaders over the servers: the event log and each inbox shard (with its consumer) get
// their leader on a different server where there are enough, so no one server's fsync queue carries every write.
// A misplaced leader is asked to step down naming the server wanted (`placement.preferred`, nats-server 2.11+, the
// minimum), so one step-down, one election, normally puts it there; should the election land elsewhere (the preferred
// server not current yet), it is asked again, a few times. Must not change any stream's data or configuration.
import type { NatsConnection } from "@nats-io/transport-node"
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream"

export interface Placed {
  readonly stream: string
  readonly wanted: string
  readonly leader: string | undefined
  readonly consumerLeader?: string | undefined
  /** Step-downs asked of the stream's leader and of its consumer's: 0 when in place already, normally 1 otherwise. */
  readonly stepDowns: { readonly stream: number; readonly consumer: number }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const leaderOf = async (jsm: JetStreamManager, stream: string): Promise<{ leader?: string; servers: Array<string> }> => {
  const info = await jsm.streams.info(stream)
  const leader = info.cluster?.leader
  const servers = [leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)].filter((s): s is string => !!s)
  return { ...(leader ? { leader } : {}), servers }
}

const consumerLeaderOf = async (jsm: JetStreamManager, stream: string, consumer: string): Promise<string | undefined> =>
  (await jsm.consumers.info(stream, consumer)).cluster?.leader

/**
 * Assigns `streams[i]` to the i-th server (sorted by name, round-robin) and steps leaders down until they sit
 * there; a stream's `consumers` follow its leader. Returns where each ended up.
 */
export const spread = async (
  nc: NatsConnection,
  streams: ReadonlyArray<{ name: string; consumer?: string }>,
  tries = 6
): Promise<Array<Placed>> => {
  const jsm = await jetstreamManager(nc)
  const first = streams[0]
  if (!first) return []
  const servers = [...(await leaderOf(jsm, first.name)).servers].sort()
  if (servers.length < 2) return []
  /**
   * Asks the leader behind `subject` to step down, naming `wanted`, until `current()` says it is there (at most
   * `tries` times): where it ended, and how many step-downs it took.
   */
  const moveTo = async (wanted: string, subject: string, current: () => Promise<string | undefined>) => {
    const preferred = JSON.stringify({ placement: { preferred: wanted } })
    let leader = await current()
    let stepDowns = 0
    while (stepDowns < tries && leader !== wanted) {
      stepDowns += 1
      await nc.request(subject, preferred, { timeout: 5_000 }).catch(() => undefined)
      await sleep(1_000)
      leader = await current()
    }
    return { leader, stepDowns }
  }
  const out: Array<Placed> = []
  for (const [i, s] of streams.entries()) {
    const wanted = servers[i % servers.length]!
    const stream = await moveTo(
      wanted,
      `$JS.API.STREAM.LEADER.STEPDOWN.${s.name}`,
      async () => (await leaderOf(jsm, s.name).catch(() => ({ leader: undefined }))).leader
    )
    const consumer = s.consumer
      ? await moveTo(wanted, `$JS.API.CONSUMER.LEADER.STEPDOWN.${s.name}.${s.consumer}`, () =>
          consumerLeaderOf(jsm, s.name, s.consumer!).catch(() => undefined)
        )
      : { leader: undefined, stepDowns: 0 }
    out.push({
      stream: s.name,
      wanted,
      leader: stream.leader,
      consumerLeader: consumer.leader,
      stepDowns: { stream: stream.stepDowns, consumer: consumer.stepDowns }
    })
  }
  return out
}
