// The node's own errors, as tagged classes: a caller matches on `_tag`, never on the message text.
// Must not carry message bodies or secrets.

/** A node that could not start (port in use, data directory locked, bad certificate…); nothing was accepted. */
export class StartError extends Error {
  readonly _tag = "StartError" as const
}

/** Another live process holds the data directory's lock. */
export class DataDirInUse extends Error {
  readonly _tag = "DataDirInUse" as const
  constructor(
    readonly dir: string,
    readonly pid: number,
    readonly lock: string
  ) {
    super(`data directory ${dir} is in use by process ${pid} (${lock})`)
  }
}

export const isStartError = (e: unknown): e is StartError =>
  typeof e === "object" && e !== null && (e as { _tag?: unknown })._tag === "StartError"
