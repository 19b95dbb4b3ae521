// The filter stage's operator commands: `missive dkim keygen DOMAIN SELECTOR` (writes a signing key, prints its DNS
// TXT record and configuration entry) and `missive config reload` (asks a running node to re-read its address maps).
// Parses and prints only; the key material and the reload are @missive/node's.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import type { Config as Configuration } from "@missive/node"
import { parseFlags } from "./Help.js"

type Config = Configuration.Config
type LoadConfig = (path: string | true | undefined) => Promise<Config>

export const FILTER_HELP = `  missive dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--dir DIR] [--config FILE]
                                           make a DKIM signing key (RSA-2048 by default) in DIR (default
                                           data_dir/dkim), print its DNS TXT record and its filter.dkim.keys entry
  missive config reload [--config FILE]    a running node re-reads its address maps (filter.recipients, senders,
                                           files); the same as sending it SIGHUP
`

export class FilterUsageError extends Error {
  override readonly name = "FilterUsageError"
}

const DOMAIN = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/
const SELECTOR = /^[A-Za-z0-9]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9_-]{0,62}))*$/

export const dkim = async (argv: ReadonlyArray<string>, loadConfig: LoadConfig): Promise<number> => {
  const a = parseFlags(argv, { type: "value", dir: "value", config: "value" })
  if (typeof a === "string") throw new FilterUsageError(a)
  const [sub, domain, selector, ...rest] = a.positional
  if (sub !== "keygen" || !domain || !selector || rest.length > 0)
    throw new FilterUsageError("usage: missive dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--dir DIR] [--config FILE]")
  if (!DOMAIN.test(domain)) throw new FilterUsageError(`not a domain name: ${JSON.stringify(domain)}`)
  if (!SELECTOR.test(selector)) throw new FilterUsageError(`not a DKIM selector: ${JSON.stringify(selector)}`)
  const type = String(a.flags.get("type") ?? "rsa")
  if (type !== "rsa" && type !== "ed25519") throw new FilterUsageError(`--type: expected rsa or ed25519, got ${type}`)
  const dirFlag = a.flags.get("dir")
  const dir = resolve(typeof dirFlag === "string" ? dirFlag : join((await loadConfig(a.flags.get("config"))).data_dir, "dkim"))
  const path = join(dir, `${domain.toLowerCase()}.${selector}.pem`)
  if (existsSync(path)) {
    process.stderr.write(`missive: ${path} exists; rotate by choosing a new selector\n`)
    return 1
  }
  const { Dkim } = await import("@missive/node")
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  writeFileSync(path, Dkim.generate(type), { mode: 0o600 })
  chmodSync(path, 0o600)
  const txt = Dkim.txtRecord(readFileSync(path, "utf8"))
  // A TXT record's strings are at most 255 octets each; resolvers join them.
  const quoted = (txt.match(/.{1,255}/g) ?? []).map((s) => `"${s}"`).join(" ")
  process.stdout.write(
    `key written to ${path}\n` +
      `DNS record (publish it before signing with this selector):\n  ${selector}._domainkey.${domain}. IN TXT ${quoted}\n` +
      `configuration (under filter.dkim.keys):\n  - domain: ${domain}\n    selector: ${selector}\n    key: ${path}\n`
  )
  return 0
}

/** `missive config reload`: SIGHUP to the node holding the data directory's lock. */
export const reload = async (argv: ReadonlyArray<string>, loadConfig: LoadConfig): Promise<number> => {
  const a = parseFlags(argv, { config: "value" })
  if (typeof a === "string") throw new FilterUsageError(a)
  if (a.positional.length > 0) throw new FilterUsageError("usage: missive config reload [--config FILE]")
  const config = await loadConfig(a.flags.get("config"))
  const lock = join(resolve(config.data_dir), "missive.lock")
  const pid = existsSync(lock) ? Number(readFileSync(lock, "utf8").trim()) : 0
  if (!pid) {
    process.stderr.write(`missive: no node running on ${resolve(config.data_dir)}\n`)
    return 1
  }
  try {
    process.kill(pid, "SIGHUP")
  } catch (e) {
    process.stderr.write(`missive: cannot signal node ${pid}: ${(e as Error).message}\n`)
    return 1
  }
  process.stdout.write(`reload requested from node ${pid} (its log says what it loaded)\n`)
  return 0
}
