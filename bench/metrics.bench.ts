// The cost of the admin listener and its metrics: the relay benchmark's load (smtp-source, 20 sessions → Missive →
// smtp-sink, loopback) through one node with `listeners.http` disabled and one with it enabled and /metrics scraped
// every second (the event-derived view folding every event), in alternating rounds on fresh data directories.
// Reports throughput and the node's CPU per message, each round and the medians.
import { Http } from "@missive/node"
import { alternate, delta, row, type Round } from "./lib/Rounds.js"

const TOKEN = "bench-metrics-token-0123456789"

export const run = async (): Promise<string> => {
  const scale = Number(process.env["MISSIVE_BENCH_SCALE"] ?? 1)
  const messages = Math.max(200, Math.round(3000 * scale))
  const rounds = Math.max(1, Number(process.env["MISSIVE_BENCH_ROUNDS"] ?? 3))
  const tokens = { tokens: [{ name: "prometheus", scope: "read", hash: Http.hashToken(TOKEN) }] }
  const r = await alternate<Round, Round & { scrapes: number }>(
    {
      name: "disabled",
      config: ({ smtp }) => ({
        listeners: { smtp: { host: "127.0.0.1", port: smtp }, submission: { enabled: false }, http: { enabled: false } },
        http: tokens
      })
    },
    {
      name: "enabled",
      config: ({ smtp, http }) => ({
        listeners: { smtp: { host: "127.0.0.1", port: smtp }, submission: { enabled: false }, http: { port: http } },
        http: tokens
      }),
      during: (_node, { http }) => {
        let scrapes = 0
        const scraper = setInterval(
          () =>
            void fetch(`http://127.0.0.1:${http}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
              .then((x) => x.text())
              .then(() => void (scrapes += 1))
              .catch(() => {}),
          1000
        )
        return {
          stop: () => {
            clearInterval(scraper)
            return { scrapes }
          }
        }
      }
    },
    { messages, rounds }
  )
  return [
    `## Admin listener and metrics (\`npm run bench -- metrics\`)`,
    ``,
    `Load: smtp-source, 20 sessions, ${messages} messages of 4 KiB per round, → Missive (one node, SQLite) → smtp-sink, loopback; ${rounds} alternating rounds, fresh data directory each, ${new Date().toISOString().slice(0, 10)}, load average ${r.load.toFixed(1)} at the end.`,
    ``,
    `| listeners.http | msgs/s per round | median | node CPU ms/msg per round | median |`,
    `| --- | --- | --- | --- | --- |`,
    row("disabled", r.a),
    row(`enabled, /metrics scraped every second (${r.b.map((x) => x.scrapes).join("/")} scrapes)`, r.b),
    ``,
    `With the listener and scrapes: ${delta(r.a, r.b)}.`
  ].join("\n")
}
