// Test harness for end-to-end tests: temp configurations, a node in-process or as a real child process
// (for kill -9), free loopback ports, and a nodemailer client. Loopback only.
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { promisify } from "node:util"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import nodemailer from "nodemailer"
import { stringify } from "yaml"
import { Config, Log, Node } from "@missive/node"

export const ROOT = resolve(import.meta.dirname, "../..")

export const tempDir = (prefix = "missive-e2e-"): { path: string; remove: () => void } => {
  const path = mkdtempSync(join(tmpdir(), prefix))
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) }
}

export { freePort } from "./Support.js"

/** A configuration for tests: loopback listeners on the given ports, fast retries, quiet. */
export const testConfig = (dataDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  deepMerge(
    {
      hostname: "mx.missive.test",
      node_id: "test-node",
      data_dir: dataDir,
      listeners: { smtp: { host: "127.0.0.1", port: 0 }, submission: { host: "127.0.0.1", port: 0 } },
      relay: { local_domains: ["missive.test"] },
      retry: { initial: "200ms", max: "1s", multiplier: 2, jitter: 0, lifetime: "1h" },
      delivery: { tls: "none", connect_timeout: "5s", command_timeout: "10s" }
    },
    extra
  )

const deepMerge = (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...a }
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k]
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && cur && typeof cur === "object" && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v
  }
  return out
}

export const writeConfig = (dir: string, config: Record<string, unknown>): string => {
  const path = join(dir, "missive.yaml")
  writeFileSync(path, stringify(config))
  return path
}

export const startNode = async (config: Record<string, unknown>, opts: { pollMs?: number } = {}): Promise<Node.RunningNode> => {
  const r = Config.parse(stringify(config), "test")
  if (!r.ok) throw new Error(`bad test config:\n${r.errors.join("\n")}`)
  return Node.start(r.config, { log: process.env["MISSIVE_TEST_LOG"] ? undefined : Log.silent, pollMs: opts.pollMs ?? 100 })
}

export interface ChildNode {
  readonly proc: ChildProcess
  readonly output: () => string
  /** Resolves with the exit code when the process ends (on its own, e.g. after a drain, or killed). */
  readonly exited: Promise<number | null>
  kill9(): Promise<void>
  stop(): Promise<number | null>
}

/**
 * Runs `missive start --config FILE --allow-root` (tests run as root in CI; a non-root user ignores the flag) as a
 * real process and waits until it listens. `prefix` wraps the command (e.g.
 * `["ip", "netns", "exec", NS]`: a wrapper that execs it, so the pid and the signals are the node's own).
 */
export const spawnNode = async (configPath: string, prefix: ReadonlyArray<string> = []): Promise<ChildNode> => {
  const argv = [process.execPath, join(ROOT, "bin/missive.mjs"), "start", "--config", configPath, "--allow-root"]
  const [cmd, ...args] = [...prefix, ...argv]
  const proc = spawn(cmd!, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  proc.stdout!.on("data", (b: Buffer) => {
    out += b.toString()
  })
  proc.stderr!.on("data", (b: Buffer) => {
    out += b.toString()
  })
  const exited = new Promise<number | null>((done) => proc.once("exit", (code) => done(code)))
  await new Promise<void>((done, fail) => {
    const t = setInterval(() => {
      if (out.includes("listening on")) {
        clearInterval(t)
        done()
      }
    }, 50)
    void exited.then((code) => {
      clearInterval(t)
      fail(new Error(`node exited (${code}) before listening:\n${out}`))
    })
  })
  return {
    proc,
    output: () => out,
    exited,
    kill9: async () => {
      proc.kill("SIGKILL")
      await exited
    },
    stop: async () => {
      proc.kill("SIGTERM")
      return exited
    }
  }
}

export interface SendResult {
  readonly ok: boolean
  readonly response: string
  readonly id?: string | undefined
}

/** Sends one raw message with nodemailer's SMTP transport; never throws. */
export const send = async (
  port: number,
  envelope: { from: string; to: ReadonlyArray<string> },
  raw: string | Buffer,
  opts: { auth?: { user: string; pass: string }; secure?: boolean; requireTLS?: boolean; host?: string; name?: string } = {}
): Promise<SendResult> => {
  const t = nodemailer.createTransport({
    host: opts.host ?? "127.0.0.1",
    port,
    secure: false,
    ignoreTLS: !opts.auth && !opts.requireTLS,
    requireTLS: opts.requireTLS ?? false,
    tls: { rejectUnauthorized: false },
    auth: opts.auth,
    // the EHLO name (nodemailer's default is the machine's host name)
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000
  })
  try {
    const info = await t.sendMail({ envelope: { from: envelope.from, to: [...envelope.to] }, raw })
    const id = /queued as (\S+)/.exec(info.response)?.[1]
    return { ok: true, response: info.response, id }
  } catch (e) {
    return { ok: false, response: String((e as { response?: string }).response ?? (e as Error).message) }
  } finally {
    t.close()
  }
}

/** A process's output lines that mention `needle` (a message id), the first `max` of them: for an assertion's message. */
export const linesMentioning = (output: string, needle: string, max: number): Array<string> =>
  output
    .split("\n")
    .filter((l) => l.includes(needle))
    .slice(0, max)

export const waitFor = async <T>(
  what: string,
  f: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000
): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await f()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export const rawMessage = (o: { from: string; to: string; subject: string; body?: string; headers?: Record<string, string> }): string =>
  [
    `From: <${o.from}>`,
    `To: <${o.to}>`,
    `Subject: ${o.subject}`,
    `Message-ID: <${o.subject.replace(/\W/g, "")}.${Math.random().toString(36).slice(2)}@client.test>`,
    ...Object.entries(o.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    ``,
    o.body ?? "Hello.\r\nSecond line.\r\n"
  ].join("\r\n")

const execFileP = promisify(execFile)

/** Runs the `missive` command as a user would (from the repository root); never throws, gives the exit code. */
export const missive = async (...args: Array<string>): Promise<{ code: number; stdout: string; stderr: string }> => {
  try {
    const r = await execFileP(process.execPath, [join(ROOT, "bin/missive.mjs"), ...args], { cwd: ROOT, maxBuffer: 64 << 20 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, stdout: x.stdout, stderr: x.stderr }
  }
}
