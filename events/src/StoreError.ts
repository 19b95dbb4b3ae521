// Errors of the storage ports, as tagged classes: the caller matches on `_tag`.
// Must not carry message bodies or secrets.

export class WrongExpectedVersion extends Error {
  readonly _tag = "WrongExpectedVersion" as const
  constructor(readonly info: { stream: string; expected: number; actual: number }) {
    super(`stream ${info.stream}: expected version ${info.expected}, found ${info.actual}`)
  }
}

export class StoreUnavailable extends Error {
  readonly _tag = "StoreUnavailable" as const
  constructor(
    readonly reason: string,
    readonly full = false
  ) {
    super(reason)
  }
}

export class BodyNotFound extends Error {
  readonly _tag = "BodyNotFound" as const
  constructor(readonly digest: string) {
    super(`body ${digest} not found`)
  }
}

export const isWrongExpectedVersion = (e: unknown): e is WrongExpectedVersion =>
  typeof e === "object" && e !== null && (e as { _tag?: unknown })._tag === "WrongExpectedVersion"
