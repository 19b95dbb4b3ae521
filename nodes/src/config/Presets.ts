// The shipped site presets (nodes/assets/site-presets.yaml: limits and reply rules for the large mailbox providers)
// and the shaping a node runs: the configuration's own `shaping.sites` and `shaping.rules` first, then the presets
// when `shaping.presets` is on. Reads one file shipped with the node, validated as a configuration; never the network.
import { readFileSync } from "node:fs"
import type { Site } from "@missive/core"
import { parse, shapingRulesOf, type Config } from "./Config.js"

const FILE = new URL("../../assets/site-presets.yaml", import.meta.url)

export type Shaping = Config["shaping"]

let cached: Shaping | undefined

/** The presets file's `shaping` section; a file that does not validate is a defect of the release (it throws). */
export const load = (): Shaping => {
  if (cached) return cached
  const r = parse(readFileSync(FILE, "utf8"), FILE.pathname)
  if (!r.ok) throw new Error(`the shipped site presets do not validate:\n${r.errors.join("\n")}`)
  return (cached = r.config.shaping)
}

/**
 * The sites' limits and rules in force: the configuration's, then the presets' (KumoMTA's shaping.toml does the
 * same: presets on by default, the site's own configuration over them). A pattern in both takes the configuration's
 * fields over the preset's; the configuration's rules are read before the presets' (the first match wins).
 */
export const shapingOf = (config: Config): { readonly sites: Shaping["sites"]; readonly rules: ReadonlyArray<Site.Rule> } => {
  if (!config.shaping.presets) return { sites: config.shaping.sites, rules: shapingRulesOf(config) }
  const presets = load()
  const sites: Record<string, Shaping["sites"][string]> = {}
  for (const [pattern, limits] of Object.entries(config.shaping.sites)) sites[pattern] = { ...presets.sites[pattern], ...limits }
  for (const [pattern, limits] of Object.entries(presets.sites)) if (!(pattern in sites)) sites[pattern] = limits
  return {
    sites,
    rules: [...shapingRulesOf(config), ...shapingRulesOf({ ...config, shaping: presets })]
  }
}
