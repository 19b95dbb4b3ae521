// @missive/events: event encoding, the storage ports (EventStore, BodyStore, Work) and their adapters, the operator's
// queue rows and message timeline.
export * as Codec from "./Codec.js"
export * as EventStore from "./EventStore.js"
export * as BodyStore from "./BodyStore.js"
export * as Work from "./Work.js"
export * as SqliteStore from "./SqliteStore.js"
export * as EmbeddedStore from "./EmbeddedStore.js"
export * as StoreError from "./StoreError.js"
export * as QueueView from "./QueueView.js"
export * as Timeline from "./Timeline.js"
export * as JetStreamEventStore from "./JetStreamEventStore.js"
export * as JetStreamBodyStore from "./JetStreamBodyStore.js"
export * as JetStreamInbox from "./JetStreamInbox.js"
