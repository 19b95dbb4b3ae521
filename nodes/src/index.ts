// @missive/node: the runnable node — start one (`Node.start`), its configuration, the actor host, the operator
// channel and the cluster pieces a launcher or a CLI talks to. The only door into nodes/: nothing outside it imports
// a file under nodes/src but this one. Must not export a command line (that is @missive/cli).
export * as Node from "./Node.js"
export * as Serve from "./Serve.js"
export * as Config from "./config/Config.js"
export * as Duration from "./config/Duration.js"
export * as Problems from "./config/Problems.js"
export * as Size from "./config/Size.js"
export * as Host from "./scheduler/Host.js"
export * as Bounce from "./bounce/Bounce.js"
export * as Admin from "./admin/Admin.js"
export * as Clock from "./runtime/Clock.js"
export * as Log from "./runtime/Log.js"
export * as Net from "./runtime/Net.js"
export * as ClusterRuntime from "./cluster/Runtime.js"
export * as Launcher from "./cluster/Launcher.js"
export * as Membership from "./cluster/Membership.js"
export * as Service from "./cluster/Service.js"
