// The in-memory layer set: the system services (with whatever clock, random source, logger or DNS the caller
// swaps in), the memory adapters of the storage ports, and no cluster. For tests and experiments: nothing it stores
// survives the process, so a node on it must never be given mail that matters.
import { Layer } from "effect"
import type { Config } from "../config/Config.js"
import * as Store from "../runtime/Store.js"
import * as Cluster from "./Cluster.js"
import * as System from "./System.js"

export const layer = (config: Config, o: System.Overrides = {}) =>
  Layer.mergeAll(Store.layerMemory, Cluster.layerNone).pipe(Layer.provideMerge(System.layer(config, o)))
