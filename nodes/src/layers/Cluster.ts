// The cluster layer set: the system services, then the JetStream runtime (nodes/src/cluster/Runtime.ts) acquired in
// the node's scope, which gives the storage ports (StoreService) and the cluster's own pieces (ClusterService: accept
// commit, fences, slots, membership). `layerNone` is the embedded node's ClusterService. Must not decide anything.
import { Context, Effect, Layer } from "effect"
import * as Runtime from "../cluster/Runtime.js"
import type { Config } from "../config/Config.js"
import { StartError } from "../NodeError.js"
import { ClockService } from "../runtime/Clock.js"
import { LogService } from "../runtime/Log.js"
import { StoreService } from "../runtime/Store.js"
import * as System from "./System.js"

/** The cluster runtime of a node started with `cluster.nats`, undefined for an embedded node. */
export class ClusterService extends Context.Service<ClusterService, { readonly runtime: Runtime.ClusterRuntime | undefined }>()(
  "missive/Cluster"
) {}

export const layerNone: Layer.Layer<ClusterService> = Layer.succeed(ClusterService, { runtime: undefined })

/** Opens the NATS connection and the JetStream adapters; closes them with the scope. */
export const layerRuntime = (config: Config): Layer.Layer<ClusterService | StoreService, StartError, ClockService | LogService> =>
  Layer.effectContext(
    Effect.gen(function* () {
      const clock = yield* ClockService
      const log = yield* LogService
      const runtime = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => Runtime.open(config, clock, log),
          catch: (e) => new StartError(`cluster: ${e instanceof Error ? e.message : String(e)}`)
        }),
        (c) => Effect.promise(() => c.close())
      )
      const ports = { events: runtime.events, bodies: runtime.bodies, work: runtime.work, pending: () => 0 }
      return Context.make(ClusterService, { runtime }).pipe(Context.add(StoreService, ports))
    })
  )

export const layer = (config: Config, o: System.Overrides = {}) => layerRuntime(config).pipe(Layer.provideMerge(System.layer(config, o)))
