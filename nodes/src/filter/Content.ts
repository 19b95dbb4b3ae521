// The content filters the configuration asks for, in the order they run: DNSBL (at connect), hooks, ClamAV, rspamd,
// then the milters. Filters.ts places this list between sender authentication and signing. Must not check anything
// itself; a scanner that is not configured is not in the list.
import type { Config } from "../config/Config.js"
import * as Clamd from "./Clamd.js"
import * as Dnsbl from "./Dnsbl.js"
import type { Filter } from "./Filter.js"
import * as Hooks from "./Hooks.js"
import * as Milter from "./Milter.js"
import * as Rspamd from "./Rspamd.js"

export interface ContentDeps {
  readonly hostname: string
  readonly dns: Config["dns"]
}

export const fromConfig = (config: Config, deps: ContentDeps): ReadonlyArray<Filter> => {
  const f = config.filter
  const filters: Array<Filter> = []
  if (f.dnsbl.zones.length > 0)
    filters.push(
      Dnsbl.filter({
        zones: f.dnsbl.zones,
        threshold: f.dnsbl.threshold,
        action: f.dnsbl.action,
        servers: deps.dns.servers,
        timeoutMs: deps.dns.timeout
      })
    )
  filters.push(...Hooks.filters(f.hooks, f.hook_timeout))
  if (f.clamav.address !== null)
    filters.push(
      Clamd.filter({
        host: f.clamav.address.host,
        port: f.clamav.address.port,
        timeoutMs: f.clamav.timeout,
        maxSize: f.clamav.max_size,
        onFailure: f.clamav.on_failure,
        hostname: deps.hostname
      })
    )
  if (f.rspamd.url !== null)
    filters.push(
      Rspamd.filter({
        url: f.rspamd.url,
        timeoutMs: f.rspamd.timeout,
        password: f.rspamd.password ?? undefined,
        onFailure: f.rspamd.on_failure,
        hostname: deps.hostname
      })
    )
  for (const m of f.milters)
    filters.push(
      Milter.filter({ host: m.address.host, port: m.address.port, timeoutMs: m.timeout, onFailure: m.on_failure, hostname: deps.hostname })
    )
  return filters
}
