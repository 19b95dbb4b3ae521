// Incident replay: reads a recorded log through the EventStore port only (SQLite, JetStream or memory alike) and
// never writes to it. Re-exported by the package's door as `Replay`; nothing outside simulations/ imports this file.
export * as FilterWhatIf from "./FilterWhatIf.js"
export * as Html from "./Html.js"
export * as Inject from "./Inject.js"
export * as Log from "./Log.js"
export * as Progress from "./Progress.js"
export * as QueueAt from "./QueueAt.js"
export * as Report from "./Report.js"
export * as Synthetic from "./Synthetic.js"
export * as Time from "./Time.js"
export * as TlsRpt from "./TlsRpt.js"
export { Timeline } from "@missive/events"
export * as WhatIf from "./WhatIf.js"
