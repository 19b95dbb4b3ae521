// Builds the node's filter stage from its configuration: which filters run, in which order, with what policy.
// The order is the contract (Filter.ts): address checks, sender authentication, content scanners and hooks, signing
// last. Must not check anything itself; a filter that is not configured is not in the list (no cost per message).
import { Policy } from "@missive/core"
import type { Config } from "../config/Config.js"
import type { Logger } from "../runtime/Log.js"
import * as Addresses from "./Addresses.js"
import * as Auth from "./Auth.js"
import * as Content from "./Content.js"
import type { Filter } from "./Filter.js"
import * as Sign from "./Sign.js"
import * as Stage from "./Stage.js"

export interface FilterDeps {
  readonly hostname: string
  /** The node's resolvers (`dns` section): sender authentication and DNSBL resolve through them. */
  readonly dns: Config["dns"]
  readonly log: Logger
  /** The node's clock (DKIM signatures' t=). */
  readonly now?: (() => number) | undefined
}

export interface NodeFilters {
  /** Undefined when no filter is configured: ingress then runs none. */
  readonly stage: Stage.FilterStage | undefined
  /** Re-reads the address maps (the configuration's and its files'); throws, keeping the old maps, on a bad one. */
  readonly reload: (config: Config) => { readonly users: number; readonly aliases: number; readonly files: ReadonlyArray<string> }
  readonly close: () => Promise<void>
}

/** The hash recorded in every MessageFiltered: the filter section of the configuration. */
export const policyHashOf = (config: Config): string => Policy.hash(config.filter)

export const make = (config: Config, deps: FilterDeps): NodeFilters => {
  const filters: Array<Filter> = []
  // Always built, so a reload can bring in maps a node started without; it only joins the stage when configured.
  const addresses = Addresses.make(config.filter, config.relay.local_domains)
  if (Addresses.configured(config.filter)) filters.push(addresses)
  // sender authentication: SPF at MAIL, DKIM, ARC, DMARC at the end of DATA (Auth.ts)
  const auth = Auth.fromConfig(config, deps.now ?? Date.now)
  if (auth) filters.push(auth)
  // content scanners, DNSBL, hooks and milters (Content.ts)
  filters.push(...Content.fromConfig(config, deps))
  // signing last, so it signs the message as it leaves (Sign.ts)
  const sign = Sign.fromConfig(config, deps.now ?? Date.now)
  if (sign) filters.push(sign)
  const stage =
    filters.length === 0 ? undefined : Stage.make(filters, policyHashOf(config), (o) => deps.log("info", String(o["event"] ?? "filter"), o))
  return {
    stage,
    reload: (next) => {
      const m = addresses.reload(next.filter)
      return { users: m.users.size, aliases: m.aliases.size, files: next.filter.files }
    },
    close: () => stage?.close() ?? Promise.resolve()
  }
}
