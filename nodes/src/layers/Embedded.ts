// The embedded layer set: the system services, then the SQLite store (events, bodies, work in one file under the
// data directory, group-committed on its writer thread) acquired in the node's scope, and no cluster. Must not hold
// node wiring; nodes/src/Node.ts builds the node from whichever layer set it is given.
import { EmbeddedStore } from "@missive/events"
import { Effect, Layer } from "effect"
import { join } from "node:path"
import type { Config } from "../config/Config.js"
import { StartError } from "../NodeError.js"
import { DataDirService } from "../runtime/DataDir.js"
import { StoreService } from "../runtime/Store.js"
import * as Cluster from "./Cluster.js"
import * as System from "./System.js"

export interface Options extends System.Overrides {
  /** Benchmarks only: "NORMAL" weakens the durability contract and is reported as such. */
  readonly synchronous?: "FULL" | "NORMAL" | undefined
}

/** `missive.db` in the data directory; closed (pending commits first) with the scope. */
export const layerSqlite = (
  config: Config,
  synchronous: "FULL" | "NORMAL" = "FULL"
): Layer.Layer<StoreService, StartError, DataDirService> =>
  Layer.effect(
    StoreService,
    Effect.gen(function* () {
      const dir = yield* DataDirService
      return yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () =>
            EmbeddedStore.open({
              path: join(dir.path, "missive.db"),
              groupCommitMs: config.store.group_commit,
              synchronous,
              eventstoredb: config.store.eventstoredb
            }),
          catch: (e) => new StartError(`store: ${e instanceof Error ? e.message : String(e)}`)
        }),
        (s) => Effect.promise(() => s.close())
      )
    })
  )

export const layer = (config: Config, o: Options = {}) =>
  Layer.mergeAll(layerSqlite(config, o.synchronous), Cluster.layerNone).pipe(Layer.provideMerge(System.layer(config, o)))
