// The storage ports a node runs on (EventStore, BodyStore, Work), as one Effect service: the embedded layer set gives
// the SQLite adapters, the cluster layer set the JetStream ones, a test `layerMemory`. Must not open anything itself
// beyond the memory adapters; a technology-bound store is acquired by its layer set (nodes/src/layers/).
import { BodyStore, EventStore, Work } from "@missive/events"
import { Context, Layer } from "effect"

export interface Ports {
  readonly events: EventStore.EventStore
  readonly bodies: BodyStore.BodyStore
  readonly work: Work.Work
  /** Writes waiting for the next commit (0 for a store that commits each write). */
  pending(): number
  /** Group-committing stores: observes each commit (duration in ms, writes carried); returns the stop. */
  onCommit?(f: (ms: number, writes: number) => void): () => void
}

export class StoreService extends Context.Service<StoreService, Ports>()("missive/Store") {}

export const layer = (ports: Ports): Layer.Layer<StoreService> => Layer.succeed(StoreService, ports)

/** Fresh in-memory adapters (events/src makeMemory): tests, nothing survives the process. */
export const layerMemory: Layer.Layer<StoreService> = Layer.sync(StoreService, () => ({
  events: EventStore.makeMemory(),
  bodies: BodyStore.makeMemory(),
  work: Work.makeMemory(),
  pending: () => 0
}))
