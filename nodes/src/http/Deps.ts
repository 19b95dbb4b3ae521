// What the HTTP API's handlers reach in the node: the configuration, the actor host (operator commands), intake
// (injection), the storage ports (reads), the cluster runtime when clustered, and the event-derived view and metrics.
// Plain values handed over by Node.ts; no handler reaches anything else.
import type { Host } from "../scheduler/Host.js"
import type { Intake } from "../intake/Intake.js"
import type { ClusterRuntime } from "../cluster/Runtime.js"
import type { Config } from "../config/Config.js"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import type { Ports } from "../runtime/Store.js"
import type { Metrics } from "./Metrics.js"
import type { View } from "./View.js"
import type { List as SuppressionList } from "../suppression/List.js"

export interface Deps {
  readonly config: Config
  readonly host: Host
  readonly intake: Intake
  readonly store: Ports
  readonly cluster: ClusterRuntime | undefined
  readonly view: View
  readonly metrics: Metrics
  readonly clock: Clock
  readonly log: Logger
  /** The suppression list (nodes/src/suppression/List.ts); absent in nodes built without it (tests). */
  readonly suppression?: SuppressionList | undefined
  /** The node's listening ports by listener name (smtp, submission, http). */
  readonly ports: () => Readonly<Record<string, number>>
}
