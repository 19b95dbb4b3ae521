// Help texts and the small helpers the CLI's entry needs before it knows which command runs. Kept apart from the
// command modules so that `missive help`, `config check` and `queue` do not load replay, NATS or the node.
import type { Config as Configuration } from "@missive/node"

type Config = Configuration.Config

export const SIM_HELP = `  missive sim run SCENARIO [--target embedded|direct|cluster:N|smtp://HOST:PORT] [--seed N]
                   [--scale X] [--duration D] [--report FILE] [--json]
                                           run a load-test scenario (a file, or the name of a bundled one) against a
                                           target (default embedded: an in-process node; cluster:N starts N NATS
                                           servers and N node processes and carries out the scenario's faults);
                                           progress on stderr, a summary table and an HTML report (default
                                           ./sim-reports/NAME-seedN.html); exits 1 when an accepted message was
                                           neither delivered nor bounced
  missive sim list                         the bundled scenarios
  missive sim check FILE                   validate a scenario; prints each problem with its key path
`

export const REPLAY_HELP = `  missive replay timeline ID [--json]     every event of one message: time, node, policy, routes and DNS answers,
                                           each attempt with its host and full reply, delays, relative times;
                                           the policy hash(es) its events were decided under
  missive replay policy HASH [--json]      the configuration a node recorded for a policy hash when it started or
                                           reloaded with it (PolicyActivated; secrets redacted), as YAML
  missive replay policy --diff HASH_A HASH_B [--json]
                                           the two recorded configurations compared by key path
                                           ("- delivery.tls: ..." / "+ delivery.tls: ...")
  missive replay report --from T --to T [--domain D] [--html FILE] [--zoom] [--buckets N] [--json]
                                           per destination and in all: messages, recipients, attempts, recipient
                                           outcomes, queued at start and open at end, reply codes, latency
                                           percentiles; queue depth, attempts and outcomes per bucket (N, default
                                           120) over the window, or with --zoom over its traffic only; --html
                                           writes a self-contained page with SVG charts
  missive replay queue --at T [--json]     the queue as it stood at T (the columns of "queue list"), from the log
  missive replay what-if --from T --to T --filter-dmarc enforce|record [--filter-temperror tempfail|record] [--json]
                                           the filter stage's recorded verdicts (MessageFiltered) re-decided under
                                           another policy: which messages would have been rejected, quarantined,
                                           deferred or accepted instead
  missive replay what-if --from T --to T --config ALT.yaml [--seed N] [--replies destination|message] [--json]
                                           recorded arrivals, operator commands and remote replies through the
                                           node's own drive plan under ALT's retry, lifetime and concurrency, on a
                                           virtual clock; ALT's shaping.rules re-decide the site throttles and
                                           suspensions on the simulated replies (recorded vs re-decided counts);
                                           recorded vs alternative; --replies message replays each
                                           message's own replies per attempt (an exact re-run of the same policy);
                                           the recorded policy hashes against ALT's, with the key-path diff when
                                           the log holds the recorded policy
  missive replay tls-rpt [--day YYYY-MM-DD] [--org NAME] [--contact ADDR] [--out FILE]
                                           the RFC 8460 daily TLS report (JSON) of one UTC day (default: yesterday)
                                           from the attempts' recorded TLS: per recipient domain and policy (sts,
                                           tlsa, no-policy-found) sessions that succeeded and failed, with details
  missive replay inject --from T --to T --target smtp://HOST:PORT [--speed 10] [--synthetic-bodies]
                                           re-send the recorded traffic with its timing (scaled) to an SMTP target
    Replay options: --config FILE (its data_dir, or its cluster.nats JetStream log; for what-if it is also the
    alternative policy), --data DIR (a data directory's SQLite log, overrides --config's), T = ISO 8601 time,
    "now", or relative ("-2h", "-1d30m"); a progress bar shows on stderr when it is a terminal. On a JetStream
    log, queue --at and report use open-set snapshots and segment digests in the stream <PREFIX>_REPLAY (derived
    data, kept current by the running nodes): over a stretch of the log without them, the first run folds the log and
    saves them, later runs start from them
`

export const CLUSTER_HELP = `  missive cluster up [--nodes N] [--dir DIR] [--nats-port P] [--smtp-port P] [--submission-port P]
                     [--base-port P] [--config FILE] [--allow-old-nats] [--allow-root]
                                           start an N-server NATS JetStream cluster and N nodes on consecutive
                                           ports (defaults: 3, ./data/cluster, NATS 4222 (routes 5222), SMTP 2525,
                                           submission 2625); --base-port P puts NATS on P, routes on P+10,
                                           SMTP on P+20, submission on P+30; each process logs to a file in its
                                           directory under DIR; Ctrl-C stops all. Needs nats-server 2.11.0+
                                           (2.10 can lose a message after a consumer leader change; before 2.10.23
                                           no sync_interval: always); --allow-old-nats runs on an older one;
                                           as root it warns unless --allow-root
  missive cluster balance [--nats URLS | --config FILE]
                                           spread the raft leaders (event log, each inbox shard and its consumer)
                                           over the servers by step-downs; each step-down is a short election, so
                                           run it when the cluster is new or quiet
  missive cluster drain NODE [--nats URLS | --config FILE] [--timeout SECONDS]
                                           the node stops accepting, finishes its deliveries in progress, hands
                                           its other messages to the peers and exits 0; waits until it is gone
                                           (default timeout 120 s; exit 1 if it does not answer or leave)
  missive cluster status [--nats URLS | --config FILE] [--json]
                                           nodes (alive, since, load, messages owned), NATS servers, streams
                                           and their replication
`

export const SUPPRESSION_HELP = `  missive suppression list [--config FILE] [--json]
                                           addresses Missive no longer sends to: reason (bounce, complaint,
                                           manual), since when, by whom, the message that caused it
  missive suppression add ADDRESS… [--reason manual|bounce|complaint] [--config FILE] [--by NAME]
  missive suppression remove ADDRESS… [--config FILE] [--by NAME]
  missive suppression import FILE [--reason R] [--config FILE] [--by NAME]
                                           on a running node; FILE has one address per line, optionally
                                           "address,reason" (SES's CSV: BOUNCE / COMPLAINT); # starts a comment
`

export class ClusterUsageError extends Error {}

/** `--nats nats://a:1,nats://b:2` as a list; undefined when not given. */
export const natsFlag = (v: string | true | undefined): ReadonlyArray<string> | undefined =>
  typeof v === "string"
    ? v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "")
        .map((s) => (s.includes("://") ? s : `nats://${s}`))
    : undefined

export const withNats = (config: Config, nats: ReadonlyArray<string> | undefined): Config =>
  nats === undefined ? config : { ...config, cluster: { ...config.cluster, nats } }

export interface Flags {
  readonly positional: Array<string>
  readonly flags: Map<string, string | true>
}

/** The one option parser of every command: `--name value`, `--name=value`, boolean `--name`; a string is the error. */
export const parseFlags = (argv: ReadonlyArray<string>, known: Readonly<Record<string, "value" | "bool">>): Flags | string => {
  const positional: Array<string> = []
  const flags = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (!a.startsWith("--")) {
      positional.push(a)
      continue
    }
    const [name, inline] = a.slice(2).split("=", 2) as [string, string | undefined]
    const kind = known[name]
    if (!kind) return `unknown option --${name}`
    if (kind === "bool") {
      flags.set(name, true)
      continue
    }
    const v = inline ?? argv[++i]
    if (v === undefined || (v.startsWith("--") && v.length > 2)) return `option --${name} needs a value`
    flags.set(name, v)
  }
  return { positional, flags }
}
