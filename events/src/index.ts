// @missive/events: event encoding, the storage ports (EventStore, BodyStore, Work) and their adapters, projections.
export * as Codec from "./Codec.js"
export * as EventStore from "./EventStore.js"
export * as BodyStore from "./BodyStore.js"
export * as Work from "./Work.js"
export * as SqliteStore from "./SqliteStore.js"
export * as StoreError from "./StoreError.js"
export * as QueueView from "./QueueView.js"
export * as Projection from "./Projection.js"
