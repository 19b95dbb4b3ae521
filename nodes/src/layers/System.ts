// The services every node runs on, from the system: the clock and random source, the JSON-lines logger, DNS through
// the configured servers, and the locked data directory. Both layer sets (Embedded, Cluster) sit on this one; a
// caller may swap the clock, the random source, the logger or DNS (simulations, tests). Must not open a store.
import { Layer } from "effect"
import type { Config } from "../config/Config.js"
import type { DataDirInUse } from "../NodeError.js"
import * as Resolver from "../router/Resolver.js"
import * as Clock from "../runtime/Clock.js"
import * as DataDir from "../runtime/DataDir.js"
import * as Log from "../runtime/Log.js"

export interface Overrides {
  readonly clock?: Clock.Clock | undefined
  readonly random?: Clock.Random | undefined
  readonly log?: Log.Logger | undefined
  /** Answers instead of the configured DNS servers (tests, simulations). */
  readonly dns?: Resolver.DnsResolver | undefined
}

export type LayerError = DataDirInUse

export type Services = Clock.ClockService | Clock.RandomService | Log.LogService | Resolver.DnsService | DataDir.DataDirService

export const layer = (config: Config, o: Overrides = {}): Layer.Layer<Services, LayerError> => {
  const clock = o.clock ? Clock.layer(o.clock) : Clock.layerSystem
  return Layer.mergeAll(
    clock,
    o.random ? Clock.layerRandom(o.random) : Clock.layerRandomSystem,
    o.log ? Log.layer(o.log) : Log.layerStdout({ level: config.log.level, format: config.log.format }).pipe(Layer.provide(clock)),
    o.dns ? Resolver.layer(o.dns) : Resolver.layerSystem({ servers: config.dns.servers, timeoutMs: config.dns.timeout }),
    DataDir.layerLocked(config.data_dir)
  )
}
