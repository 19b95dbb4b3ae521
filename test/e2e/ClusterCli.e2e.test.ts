// `missive cluster up --nodes 3`, `missive cluster status --nats …` and `missive queue list|show --nats …` as a user
// runs them: `cluster up` as a child process in a temp working directory (data under its ./data/cluster), on ports
// checked free, mail sent to each node, a node killed (reported, nothing else printed), then SIGINT stops everything and
// no child process is left. Its output is a screenful: where each server and node listens and logs, "ready", then only
// what went down; every nats-server runs with synced JetStream writes (its /varz says so). An older nats-server is
// refused unless --allow-unsynced.
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"
import { promisify } from "node:util"
import { stringify } from "yaml"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, ROOT, send, tempDir, waitFor } from "../src/Harness.js"

const run = promisify(execFile)
const missive = async (cwd: string, ...args: Array<string>) => {
  try {
    const r = await run(process.execPath, [join(ROOT, "bin/missive.mjs"), ...args], { cwd })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, stdout: x.stdout, stderr: x.stderr }
  }
}

const portFree = (port: number) =>
  new Promise<boolean>((done) => {
    const s = createServer()
    s.once("error", () => done(false))
    s.listen(port, "127.0.0.1", () => s.close(() => done(true)))
  })

/** A base port whose NATS (P..P+2), route (P+10..), SMTP (P+20..) and submission (P+30..) ports are all free. */
const freeBase = async (): Promise<number> => {
  for (let i = 0; i < 50; i++) {
    const base = 20_000 + Math.floor(Math.random() * 3000) * 10
    const ports = [0, 10, 20, 30].flatMap((o) => [0, 1, 2].map((k) => base + o + k))
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base
  }
  throw new Error("no free port range")
}

const childrenOf = (pid: number): Array<number> =>
  readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .map(Number)
    .filter((p) => {
      try {
        const s = readFileSync(`/proc/${p}/stat`, "utf8")
        return Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]) === pid
      } catch {
        return false
      }
    })
const descendantsOf = (pid: number): Array<number> => childrenOf(pid).flatMap((c) => [c, ...descendantsOf(c)])
const commOf = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim()
  } catch {
    return "?"
  }
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The NATS servers' last log lines, for a launch that failed (what JetStream said while it formed). */
const serverLogs = (cwd: string): string =>
  [1, 2, 3]
    .map((k) => {
      const f = join(cwd, "data/cluster", `nats-${k}`, "nats-server.log")
      const lines = existsSync(f) ? readFileSync(f, "utf8").split("\n").filter(Boolean).slice(-25) : ["(no log)"]
      return `\n---- nats-${k}\n${lines.join("\n")}`
    })
    .join("")

describe("missive cluster up (as a user runs it)", () => {
  const dir = tempDir("missive-cup-")
  let sink: CaptureServer
  let down: CaptureServer
  let up: ChildProcess | undefined
  let out = ""
  let base = 0
  let nats = ""
  const exited = { code: undefined as number | null | undefined }

  beforeAll(async () => {
    sink = await startCapture()
    down = await startCapture({ onRcpt: () => ({ code: 451, text: "4.2.1 Mailbox busy" }) })
    writeFileSync(
      join(dir.path, "base.yaml"),
      stringify({
        hostname: "cluster.missive.test",
        relay: { relay_domains: ["sink.test", "down.test"] },
        routes: { "sink.test": `127.0.0.1:${sink.port}`, "down.test": `127.0.0.1:${down.port}` },
        delivery: { tls: "none" },
        retry: { initial: "1h", max: "2h", lifetime: "5d" }
      })
    )
    base = await freeBase()
    nats = [0, 1, 2].map((k) => `nats://127.0.0.1:${base + k}`).join(",")
    up = spawn(
      process.execPath,
      [
        join(ROOT, "bin/missive.mjs"),
        "cluster",
        "up",
        "--nodes",
        "3",
        "--base-port",
        String(base),
        "--config",
        "base.yaml",
        "--allow-root"
      ],
      { cwd: dir.path, stdio: ["ignore", "pipe", "pipe"] }
    )
    up.stdout!.on("data", (b: Buffer) => {
      out += b.toString()
    })
    up.stderr!.on("data", (b: Buffer) => {
      out += b.toString()
    })
    up.once("exit", (code) => {
      exited.code = code
    })
    await waitFor(
      "cluster up prints its listening lines",
      () =>
        exited.code !== undefined
          ? Promise.reject(new Error(`cluster up exited ${exited.code}:\n${out}${serverLogs(dir.path)}`))
          : /Ctrl-C stops all/.test(out),
      200_000
    )
  }, 240_000)
  afterAll(async () => {
    if (up && exited.code === undefined) {
      up.kill("SIGKILL")
    }
    await sink?.close()
    await down?.close()
    dir.remove()
  })

  it("starts 3 NATS servers and 3 nodes, data under ./data/cluster, and prints where each listens and logs in a screenful", async () => {
    console.log(out)
    for (let k = 1; k <= 3; k++) {
      expect(out).toMatch(
        new RegExp(
          `node-${k} +smtp 127\\.0\\.0\\.1:${base + 19 + k}  submission 127\\.0\\.0\\.1:${base + 29 + k}  log data/cluster/node-${k}/node\\.log`
        )
      )
      expect(out).toMatch(
        new RegExp(
          `NATS s${k} +nats://127\\.0\\.0\\.1:${base + k - 1} +monitor http://127\\.0\\.0\\.1:\\d+  log data/cluster/nats-${k}/nats-server\\.log`
        )
      )
    }
    expect(out).toMatch(/nats-server \d+\.\d+\.\d+, JetStream writes synced \(sync_interval: always\)/)
    expect(out).toMatch(/ready in [\d.]+ s: 3 NATS servers \(JetStream R3\) and 3 nodes/)
    expect(out).toContain(`missive cluster status --nats ${nats}`)
    // No process's own log on the terminal: it is in the process's file.
    expect(out.split("\n").length, out).toBeLessThanOrEqual(20)
    expect(out).not.toContain(`{"t":`)
    expect(out).not.toContain("[INF]")
    for (const d of ["nats-1", "nats-2", "nats-3", "node-1", "node-2", "node-3"])
      expect(existsSync(join(dir.path, "data/cluster", d))).toBe(true)
    for (let k = 1; k <= 3; k++) {
      expect(readFileSync(join(dir.path, `data/cluster/nats-${k}/nats-server.log`), "utf8")).toMatch(/Server is ready/)
      expect(readFileSync(join(dir.path, `data/cluster/nats-${k}/server.conf`), "utf8")).toMatch(/sync_interval: always/)
      // The node logs "node started" just after its listeners answer (which is what the launcher waits for).
      await waitFor(`node-${k} logs "node started"`, () =>
        readFileSync(join(dir.path, `data/cluster/node-${k}/node.log`), "utf8").includes('"node started"')
      )
    }
  })

  it("every nats-server runs with synced JetStream writes (its /varz)", async () => {
    const monitors = [...out.matchAll(/monitor (http:\/\/127\.0\.0\.1:\d+)/g)].map((m) => m[1]!)
    expect(monitors).toHaveLength(3)
    for (const m of monitors) {
      const varz = (await (await fetch(`${m}/varz`)).json()) as { version: string; jetstream: { config: { sync_always?: boolean } } }
      expect(varz.jetstream.config.sync_always, `${m}/varz`).toBe(true)
    }
  })

  const ids: Array<string> = []
  it("every node accepts and delivers mail", async () => {
    for (let k = 0; k < 3; k++) {
      const r = await send(
        base + 20 + k,
        { from: "a@src.test", to: ["x@sink.test"] },
        rawMessage({ from: "a@src.test", to: "x@sink.test", subject: `to node ${k + 1}` })
      )
      expect(r.response).toMatch(/^250/)
      const d = await send(
        base + 20 + k,
        { from: "a@src.test", to: ["y@down.test"] },
        rawMessage({ from: "a@src.test", to: "y@down.test", subject: `deferred via node ${k + 1}` })
      )
      expect(d.response).toMatch(/^250/)
      ids.push(d.id!)
    }
    await waitFor("3 delivered", () => sink.messages.length >= 3, 30_000)
    expect(
      new Set(
        sink.messages.map((m) =>
          m.raw
            .toString()
            .match(/Subject: (.*)/)?.[1]
            ?.trim()
        )
      )
    ).toEqual(new Set(["to node 1", "to node 2", "to node 3"]))
  }, 60_000)

  it("cluster status shows the nodes alive, the NATS servers and each stream's replication", async () => {
    const r = await waitFor(
      "3 nodes alive in status",
      async () => {
        const x = await missive(dir.path, "cluster", "status", "--nats", nats)
        return (x.stdout.match(/ alive /g) ?? []).length === 3 ? x : undefined
      },
      30_000
    )
    console.log(r.stdout)
    expect(r.code).toBe(0)
    for (let k = 1; k <= 3; k++) expect(r.stdout).toMatch(new RegExp(`node-${k}\\s+alive`))
    expect(r.stdout).toMatch(/JetStream servers seen: s1, s2, s3/)
    expect(r.stdout).toMatch(/MISSIVE_EVENTS .* replicas s\d, s\d/)
    expect(r.stdout).not.toMatch(/DEGRADED/)
    const j = JSON.parse((await missive(dir.path, "cluster", "status", "--nats", nats, "--json")).stdout) as {
      nodes: Array<{ alive: boolean }>
      streams: Array<{ replicas: Array<unknown> }>
    }
    expect(j.nodes.filter((n) => n.alive)).toHaveLength(3)
    expect(j.streams.length).toBeGreaterThanOrEqual(4)
    for (const s of j.streams) expect(s.replicas).toHaveLength(2)
  }, 60_000)

  it("queue list and queue show read the cluster's queue", async () => {
    const r = await waitFor(
      "3 deferred messages listed",
      async () => {
        const x = await missive(dir.path, "queue", "list", "--nats", nats)
        return ids.every((id) => x.stdout.includes(id)) ? x : undefined
      },
      30_000
    )
    console.log(r.stdout)
    expect(r.code).toBe(0)
    const s = await missive(dir.path, "queue", "show", ids[0]!, "--nats", nats)
    expect(s.code).toBe(0)
    expect(s.stdout).toMatch(/MessageReceived/)
    expect(s.stdout).toMatch(/AttemptDeferred/)
  }, 60_000)

  it("a node killed is reported as down, and nothing else is printed", async () => {
    const before = out.length
    const node3 = childrenOf(up!.pid!).find((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("node-3/missive.yaml")
      } catch {
        return false
      }
    })
    expect(node3).toBeDefined()
    process.kill(node3!, "SIGKILL")
    await waitFor(
      "node-3 reported down",
      () => /node-3 \(smtp [^)]*\) is DOWN \(killed by SIGKILL\); its log: data\/cluster\/node-3\/node\.log/.test(out),
      10_000
    )
    await new Promise((r) => setTimeout(r, 1000))
    expect(out.slice(before).trim().split("\n"), out.slice(before)).toHaveLength(1)
  }, 30_000)

  it("SIGINT stops every node and NATS server; no child process is left", async () => {
    const kids = descendantsOf(up!.pid!)
    const names = kids.map(commOf)
    // 3 nats-servers and the 2 nodes left.
    expect(childrenOf(up!.pid!).length, names.join(",")).toBeGreaterThanOrEqual(5)
    expect(names.filter((n) => n === "nats-server").length, names.join(",")).toBe(3)
    up!.kill("SIGINT")
    await waitFor("cluster up exits", () => exited.code !== undefined, 60_000)
    expect(exited.code).toBe(0)
    // Children are reaped a moment after the launcher exits; give them that moment, then none may be left.
    await waitFor("every child process gone", () => kids.filter(alive).length === 0, 15_000).catch(() => undefined)
    expect(kids.filter(alive).map((p) => `${p} ${commOf(p)}`)).toEqual([])
    expect(out).toMatch(/SIGINT: stopping/)
  }, 90_000)
})

describe("missive cluster up with a nats-server older than 2.11.0", () => {
  const dir = tempDir("missive-cup-old-")
  afterAll(() => dir.remove())

  /** `cluster up` with a fake nats-server of that version first on the PATH. */
  const upWith = async (version: string, extra: ReadonlyArray<string> = []) => {
    const bin = join(dir.path, `bin-${version}`)
    mkdirSync(bin)
    writeFileSync(join(bin, "nats-server"), `#!/bin/sh\necho 'nats-server: v${version}'\n`)
    chmodSync(join(bin, "nats-server"), 0o755)
    const cwd = join(dir.path, `cwd-${version}`)
    mkdirSync(cwd)
    const r = await run(
      process.execPath,
      [join(ROOT, "bin/missive.mjs"), "cluster", "up", "--nodes", "1", "--base-port", String(await freeBase()), "--allow-root", ...extra],
      { cwd, env: { ...process.env, PATH: `${bin}:${process.env["PATH"] ?? ""}` } }
    ).then(
      () => ({ code: 0, stderr: "" }),
      (e: { code: number; stderr: string }) => e
    )
    return { ...r, made: existsSync(join(cwd, "data")) }
  }

  it("before 2.10.23: refuses, says why (no synced writes, the consumer's skipped message) and what to do, starts nothing", async () => {
    const r = await upWith("2.9.25")
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(
      /nats-server 2\.9\.25 is older than 2\.11\.0: it cannot fsync each JetStream write \(jetstream \{ sync_interval: always \}\)/
    )
    expect(r.stderr).toMatch(/can skip, and remove, a message never delivered after a consumer leader change/)
    expect(r.stderr).toMatch(/--allow-old-nats/)
    expect(r.made).toBe(false)
  })

  it("2.10 (synced writes): refused too, for the consumer's skipped message alone", async () => {
    const r = await upWith("2.10.27")
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/nats-server 2\.10\.27 is older than 2\.11\.0: its replicated consumers can skip, and remove, a message/)
    expect(r.stderr).not.toMatch(/cannot fsync/)
    expect(r.stderr).toMatch(/--allow-old-nats/)
    expect(r.made).toBe(false)
  })
})
