// The cost of traffic shaping per site on the relay load: one node with no shaping at all (no presets, no sites, no
// rules) against one whose route site has its own limits (connections, per-second and per-hour rates,
// messages_per_connection, never reached) and automation rules that read every reply (never matching), with the
// shipped presets loaded, in alternating rounds on fresh data directories. Reports throughput and CPU per message.
import { alternate, delta, row } from "./lib/Rounds.js"

export const run = async (): Promise<string> => {
  const scale = Number(process.env["MISSIVE_BENCH_SCALE"] ?? 1)
  const messages = Math.max(200, Math.round(3000 * scale))
  const rounds = Math.max(1, Number(process.env["MISSIVE_BENCH_ROUNDS"] ?? 3))
  const smtpOnly = (smtp: number) => ({ smtp: { host: "127.0.0.1", port: smtp }, submission: { enabled: false }, http: { enabled: false } })
  const r = await alternate(
    { name: "off", config: ({ smtp }) => ({ listeners: smtpOnly(smtp), shaping: { presets: false } }) },
    {
      name: "on",
      config: ({ smtp, sinkPort }) => ({
        listeners: smtpOnly(smtp),
        shaping: {
          presets: true,
          sites: {
            [`route:127.0.0.1:${sinkPort}`]: {
              connections: 20,
              rate_per_second: 100_000,
              rate_per_hour: 100_000_000,
              messages_per_connection: 100_000
            }
          },
          rules: [
            { match: "^421 4\\.7\\.0 .*try again later", action: "throttle", duration: "10m", connections: 2 },
            { match: "^4\\d\\d 4\\.7\\.28", action: "suspend", duration: "5m" }
          ]
        }
      })
    },
    { messages, rounds }
  )
  return [
    `## Traffic shaping per site (\`npm run bench -- shaping\`)`,
    ``,
    `Load: smtp-source, 20 sessions, ${messages} messages of 4 KiB per round, → Missive (one node, SQLite) → smtp-sink, loopback; ${rounds} alternating rounds, fresh data directory each, ${new Date().toISOString().slice(0, 10)}, load average ${r.load.toFixed(1)} at the end. "On": the sink's route site with connections 20, 100000/s, 100000000/h, 100000 messages per connection, two automation rules reading every reply, and the shipped presets; none is ever reached.`,
    ``,
    `| shaping | msgs/s per round | median | node CPU ms/msg per round | median |`,
    `| --- | --- | --- | --- | --- |`,
    row("off (no presets, sites or rules)", r.a),
    row("on (limits and rules on the route's site, presets)", r.b),
    ``,
    `With shaping: ${delta(r.a, r.b)}.`
  ].join("\n")
}
