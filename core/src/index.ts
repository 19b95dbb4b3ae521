// @missive/core: the pure domain of Missive. No I/O, no effect runtime, no clock or randomness.
export * as Message from "./Message.js"
export * as Policy from "./Policy.js"
export * as Reply from "./Reply.js"
export * as Route from "./Route.js"
export * as Dsn from "./Dsn.js"
export * as Drive from "./Drive.js"
export * as Hash from "./Hash.js"
export * as Trace from "./Trace.js"
