// A DNSSEC-signed test zone behind a validating resolver, both Debian's unbound on loopback: the zone is signed with
// ldnsutils (ldns-keygen, ldns-signzone), served by one unbound as an auth-zone, and validated by a second unbound
// that holds the zone's DS as its trust anchor and asks the first (stub-zone). `tamper` edits the signed zone text
// before it is served, so a record can be made bogus (its RRSIG no longer matches). Test-only; loopback only.
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { freePort } from "./Support.js"

export interface SignedZone {
  /** The validating resolver, "127.0.0.1:port". */
  readonly resolver: string
  readonly resolverPort: number
  close(): Promise<void>
}

const conf = (dir: string, port: number, body: string): string =>
  [
    "server:",
    `  interface: 127.0.0.1@${port}`,
    `  port: ${port}`,
    "  do-daemonize: no",
    "  use-syslog: no",
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    "  access-control: 127.0.0.0/8 allow",
    "  do-ip6: no",
    // test. is one of unbound's default local zones (RFC 6761): serve and resolve it like any other
    '  local-zone: "test." nodefault',
    body
  ].join("\n") + "\n"

const waitUp = async (child: ChildProcess, log: () => string): Promise<void> => {
  const deadline = Date.now() + 10_000
  while (!log().includes("start of service")) {
    if (child.exitCode !== null) throw new Error(`unbound exited: ${log()}`)
    if (Date.now() > deadline) throw new Error(`unbound did not start: ${log()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const run = async (dir: string, name: string, config: string): Promise<{ child: ChildProcess; stop: () => Promise<void> }> => {
  const file = join(dir, `${name}.conf`)
  writeFileSync(file, config)
  let out = ""
  const child = spawn("unbound", ["-d", "-c", file], { stdio: ["ignore", "pipe", "pipe"] })
  child.stdout?.on("data", (b: Buffer) => (out += b.toString()))
  child.stderr?.on("data", (b: Buffer) => (out += b.toString()))
  await waitUp(child, () => out)
  return {
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once("exit", () => resolve())
        child.kill("SIGTERM")
      })
  }
}

/** Signs `records` (zone file lines relative to `origin`) and starts the two servers. */
export const startSignedZone = async (
  dir: string,
  origin: string,
  records: ReadonlyArray<string>,
  tamper: (signed: string) => string = (s) => s
): Promise<SignedZone> => {
  const zone = join(dir, `${origin}.zone`)
  writeFileSync(
    zone,
    [
      `$ORIGIN ${origin}.`,
      "$TTL 300",
      `@ IN SOA ns.${origin}. hostmaster.${origin}. 1 3600 600 86400 300`,
      `@ IN NS ns.${origin}.`,
      "ns IN A 127.0.0.1",
      ...records
    ].join("\n") + "\n"
  )
  const keygen = (...args: string[]): string =>
    execFileSync("ldns-keygen", [...args, origin], { cwd: dir })
      .toString()
      .trim()
  const ksk = keygen("-a", "ECDSAP256SHA256", "-k")
  const zsk = keygen("-a", "ECDSAP256SHA256")
  execFileSync("ldns-signzone", ["-n", zone, ksk, zsk], { cwd: dir })
  writeFileSync(`${zone}.signed`, tamper(readFileSync(`${zone}.signed`, "utf8")))

  const [authPort, resolverPort] = [await freePort(), await freePort()]
  const auth = await run(
    dir,
    "auth",
    conf(
      dir,
      authPort,
      [
        '  module-config: "iterator"',
        "auth-zone:",
        `  name: "${origin}"`,
        `  zonefile: "${zone}.signed"`,
        "  for-downstream: yes",
        "  for-upstream: no"
      ].join("\n")
    )
  )
  const validator = await run(
    dir,
    "validator",
    conf(
      dir,
      resolverPort,
      [
        "  do-not-query-localhost: no",
        '  module-config: "validator iterator"',
        `  trust-anchor-file: "${join(dir, `${ksk}.ds`)}"`,
        "  val-log-level: 1",
        "stub-zone:",
        `  name: "${origin}"`,
        `  stub-addr: 127.0.0.1@${authPort}`
      ].join("\n")
    )
  ).catch(async (e: unknown) => {
    await auth.stop()
    throw e
  })
  return {
    resolver: `127.0.0.1:${resolverPort}`,
    resolverPort,
    close: async () => {
      await validator.stop()
      await auth.stop()
    }
  }
}
