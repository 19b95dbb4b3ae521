// A private network of Linux network namespaces for partition tests (root only; `ip` from iproute2, no firewall):
// namespaces <tag>-1..n, each holding one nats-server and one Missive node, and a hub namespace <tag>-hub with two
// bridges. The "cluster" bridge (10.77.1.0/24, member k = 10.77.1.k) carries the NATS routes and node↔server traffic;
// the "service" bridge (10.77.S.0/24, member k = 10.77.S.k, the test process = 10.77.S.254 on the one interface this
// adds to the root namespace) carries SMTP: the test to each node, each node to the test's sink. Members' service
// ports are isolated (a bridge port flag), so the service bridge joins each member to the test process only, never to
// another member: a member cut from the cluster bridge reaches no other member's servers. cut(k) takes member k's
// cluster port out of the bridge in the hub (`nomaster`: its packets are dropped silently, its own link stays up, as
// in a real partition: no reset, no carrier loss); heal(k) puts it back. Nothing outside these namespaces and that one interface is
// touched; the tag carries the pid, and a later run removes the leftovers of a run whose process is gone.
import { execFileSync } from "node:child_process"

const PREFIX = "mpt"

const ip = (...args: Array<string>): string => execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
const tryIp = (...args: Array<string>): void => {
  try {
    ip(...args)
  } catch {
    /* already gone */
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Kills every process left in a namespace (a crashed run's nats-servers and nodes), then deletes it. */
const removeNamespace = (ns: string): void => {
  let pids: Array<number> = []
  try {
    pids = ip("netns", "pids", ns).split(/\s+/).filter(Boolean).map(Number)
  } catch {
    /* gone */
  }
  for (const pid of pids)
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      /* gone */
    }
  tryIp("netns", "delete", ns)
}

/** Removes namespaces and root interfaces of earlier runs (this prefix) whose process no longer exists. */
export const removeLeftovers = (): Array<string> => {
  const removed: Array<string> = []
  const nss = ip("netns", "list")
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter(Boolean)
  for (const ns of nss) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(ns)
    if (m && !alive(Number(m[1]))) {
      removeNamespace(ns)
      removed.push(ns)
    }
  }
  const links = ip("-o", "link", "show")
    .split("\n")
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((x): x is string => !!x)
  for (const link of links) {
    const m = new RegExp(`^${PREFIX}(\\d+)r$`).exec(link)
    if (m && !alive(Number(m[1]))) {
      tryIp("link", "delete", link)
      removed.push(link)
    }
  }
  return removed
}

export interface PartitionNet {
  /** The namespace of member k (1-based), for `ip netns exec`. */
  ns(k: number): string
  /** `["ip", "netns", "exec", ns(k)]`: a command prefix that runs a program inside member k. */
  exec(k: number): Array<string>
  clusterAddress(k: number): string
  serviceAddress(k: number): string
  /** The test process's address on the service bridge (root namespace). */
  readonly host: string
  /** Member k loses the cluster bridge (its server and node reach no other member); the service bridge stays. */
  cut(k: number): void
  heal(k: number): void
  dispose(): void
}

export const createPartitionNet = (n: number): PartitionNet => {
  removeLeftovers()
  const tag = `${PREFIX}${process.pid}`
  const hub = `${tag}-hub`
  const rootLink = `${tag}r`
  const svc = 2 + (process.pid % 200) // the service subnet is seen by the root namespace: one per pid
  const ns = (k: number) => `${tag}-${k}`
  const clusterAddress = (k: number) => `10.77.1.${k}`
  const serviceAddress = (k: number) => `10.77.${svc}.${k}`
  const host = `10.77.${svc}.254`
  const dispose = () => {
    for (let k = 1; k <= n; k++) removeNamespace(ns(k))
    removeNamespace(hub)
    tryIp("link", "delete", rootLink)
  }
  try {
    ip("netns", "add", hub)
    ip("-n", hub, "link", "set", "lo", "up")
    for (const br of ["brc", "brs"]) {
      ip("-n", hub, "link", "add", br, "type", "bridge")
      ip("-n", hub, "link", "set", br, "up")
    }
    for (let k = 1; k <= n; k++) {
      ip("netns", "add", ns(k))
      ip("-n", ns(k), "link", "set", "lo", "up")
      ip("-n", hub, "link", "add", `c${k}`, "type", "veth", "peer", "name", "ethc", "netns", ns(k))
      ip("-n", hub, "link", "add", `s${k}`, "type", "veth", "peer", "name", "eths", "netns", ns(k))
      ip("-n", hub, "link", "set", `c${k}`, "master", "brc")
      ip("-n", hub, "link", "set", `s${k}`, "master", "brs")
      ip("-n", hub, "link", "set", "dev", `s${k}`, "type", "bridge_slave", "isolated", "on")
      ip("-n", hub, "link", "set", `c${k}`, "up")
      ip("-n", hub, "link", "set", `s${k}`, "up")
      ip("-n", ns(k), "addr", "add", `${clusterAddress(k)}/24`, "dev", "ethc")
      ip("-n", ns(k), "addr", "add", `${serviceAddress(k)}/24`, "dev", "eths")
      ip("-n", ns(k), "link", "set", "ethc", "up")
      ip("-n", ns(k), "link", "set", "eths", "up")
    }
    ip("link", "add", rootLink, "type", "veth", "peer", "name", "r", "netns", hub)
    ip("-n", hub, "link", "set", "r", "master", "brs")
    ip("-n", hub, "link", "set", "r", "up")
    ip("addr", "add", `${host}/24`, "dev", rootLink)
    ip("link", "set", rootLink, "up")
  } catch (e) {
    dispose()
    throw e
  }
  return {
    ns,
    exec: (k) => ["ip", "netns", "exec", ns(k)],
    clusterAddress,
    serviceAddress,
    host,
    cut: (k) => ip("-n", hub, "link", "set", `c${k}`, "nomaster"),
    heal: (k) => ip("-n", hub, "link", "set", `c${k}`, "master", "brc"),
    dispose
  }
}
