// @missive/node: the runnable node — start one (`Node.start`), its configuration, the actor host and the CLI entry.
export * as Node from "./Node.js"
export * as Config from "./config/Config.js"
export * as Host from "./actor/Host.js"
export * as Bounce from "./bounce/Bounce.js"
export * as Clock from "./runtime/Clock.js"
export { main } from "./cli/main.js"
