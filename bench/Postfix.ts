// Postfix for the simulation benchmark: configures a private instance in a temp directory (its own main.cf and
// master.cf, queue and data directories there, loopback only, a free port, transport map to the simulated receivers),
// starts it with `postfix -c DIR start` and stops it. Never touches /etc/postfix or the system's instance.
import { execFileSync } from "node:child_process"
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { writtenBytes } from "../test/src/Support.js"

export interface PostfixInstance {
  readonly port: number
  readonly dir: string
  /** utime+stime of the master and its children (live and reaped), ms. */
  cpuMs(): number
  /** Bytes the master and its children (live and reaped) caused to be written to storage (`writtenBytes`). */
  writtenBytes(): number
  stop(): void
}

export const available = (): string | undefined =>
  existsSync("/usr/sbin/postfix")
    ? process.getuid?.() === 0
      ? undefined
      : "postfix needs root to start its master here"
    : "postfix is not installed"

const TICK = 100 // USER_HZ on Linux

const stat = (pid: number): { ppid: number; cpu: number; children: number } | undefined => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8")
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ")
    return { ppid: Number(f[1]), cpu: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) }
  } catch {
    return undefined
  }
}

export const start = (o: { port: number; routes: ReadonlyMap<string, string>; receiversPort: number }): PostfixInstance => {
  const dir = mkdtempSync(join(tmpdir(), "missive-postfix-"))
  const conf = join(dir, "etc")
  mkdirSync(conf)
  for (const d of ["queue", "data"]) mkdirSync(join(dir, d))
  chownSync(
    join(dir, "data"),
    Number(execFileSync("id", ["-u", "postfix"]).toString()),
    Number(execFileSync("id", ["-g", "postfix"]).toString())
  )
  chmodSync(dir, 0o755)
  writeFileSync(
    join(conf, "transport"),
    [...o.routes].map(([domain, addr]) => `${domain} smtp:[${addr}]:${o.receiversPort}`).join("\n") + "\n"
  )
  writeFileSync(
    join(conf, "main.cf"),
    `
compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.sim
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = texthash:${conf}/transport
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
message_size_limit = 12000000
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
default_process_limit = 100
minimal_backoff_time = 1s
maximal_backoff_time = 4s
queue_run_delay = 1s
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
smtp_destination_concurrency_limit = 20
`
  )
  writeFileSync(
    join(conf, "master.cf"),
    `
127.0.0.1:${o.port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`
  )
  const run = (...args: Array<string>) =>
    execFileSync("/usr/sbin/postfix", ["-c", conf, ...args], { stdio: "pipe", env: { ...process.env, MAIL_CONFIG: conf } })
  run("set-permissions")
  run("start")
  const pidFile = join(dir, "queue", "pid", "master.pid")
  let master = 0
  for (let i = 0; i < 100 && !master; i++) {
    if (existsSync(pidFile)) master = Number(readFileSync(pidFile, "utf8").trim())
    else execFileSync("sleep", ["0.05"])
  }
  if (!master)
    throw new Error(
      `postfix did not start: ${existsSync(join(dir, "maillog")) ? readFileSync(join(dir, "maillog"), "utf8").slice(-2000) : "no log"}`
    )
  const children = () =>
    readdirSync("/proc")
      .filter((n) => /^\d+$/.test(n) && stat(Number(n))?.ppid === master)
      .map(Number)
  const written = (pid: number) => {
    try {
      return writtenBytes(pid)
    } catch {
      return 0 // exited meanwhile: its bytes are the master's now
    }
  }
  return {
    port: o.port,
    dir,
    cpuMs: () => {
      const m = stat(master)
      let ticks = m ? m.cpu + m.children : 0
      for (const p of children()) {
        const s = stat(p)
        if (s) ticks += s.cpu + s.children
      }
      return (ticks * 1000) / TICK
    },
    writtenBytes: () => written(master) + children().reduce((sum, p) => sum + written(p), 0),
    stop: () => {
      try {
        run("stop")
      } catch {
        /* already stopped */
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
