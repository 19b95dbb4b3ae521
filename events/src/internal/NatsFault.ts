// The one place where an error thrown by the NATS client (JetStream API, KV, object store) is classified: by its
// JetStream API error code, and only where the client gives none, by its text. The JetStream adapters match on the
// kind this returns, never on an error's message; what they rethrow is a StoreError (`unavailable`). Must not retry.
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { StoreUnavailable } from "../StoreError.js"

export type Kind =
  /** No message at that sequence or subject (a read past the end, a deleted message). */
  | "NoMessage"
  /** No such stream, consumer, key or object. */
  | "NotFound"
  /** A stream, consumer or bucket of that name already exists. */
  | "AlreadyExists"
  /** A compare-and-set lost: the subject's last sequence (or the KV key's revision) was not the expected one. */
  | "WrongLastSequence"
  | "Other"

/** Server codes not named in the client's `JetStreamApiCodes`. */
const STREAM_NAME_IN_USE = 10058
const CONSUMER_NAME_IN_USE = 10013
const CONSUMER_EXISTS = 10148

const byCode: Readonly<Record<number, Kind>> = {
  [JetStreamApiCodes.NoMessageFound]: "NoMessage",
  [JetStreamApiCodes.StreamNotFound]: "NotFound",
  [JetStreamApiCodes.ConsumerNotFound]: "NotFound",
  [JetStreamApiCodes.StreamWrongLastSequence]: "WrongLastSequence",
  [JetStreamApiCodes.StreamWrongLastSequenceUnknown]: "WrongLastSequence",
  [STREAM_NAME_IN_USE]: "AlreadyExists",
  [CONSUMER_NAME_IN_USE]: "AlreadyExists",
  [CONSUMER_EXISTS]: "AlreadyExists"
}

/** Errors the client raises itself, without an API code (KV `create` over a live key, object store lookups). */
const byText: ReadonlyArray<readonly [RegExp, Kind]> = [
  [/wrong last sequence|key exists/i, "WrongLastSequence"],
  [/already in use|already exists/i, "AlreadyExists"],
  [/no message found/i, "NoMessage"],
  [/not found/i, "NotFound"]
]

const textOf = (e: unknown): string => String((e as Error)?.message ?? e)

export const kindOf = (e: unknown): Kind => {
  const code = e instanceof JetStreamApiError ? e.code : (e as { code?: unknown })?.code
  const known = typeof code === "number" ? byCode[code] : undefined
  if (known !== undefined) return known
  const text = textOf(e)
  return byText.find(([re]) => re.test(text))?.[1] ?? "Other"
}

export const isNoMessage = (e: unknown): boolean => kindOf(e) === "NoMessage"
/** No message, or nothing of that name at all. */
export const isGone = (e: unknown): boolean => {
  const k = kindOf(e)
  return k === "NoMessage" || k === "NotFound"
}
export const isAlreadyExists = (e: unknown): boolean => kindOf(e) === "AlreadyExists"
export const isWrongLastSequence = (e: unknown): boolean => kindOf(e) === "WrongLastSequence"

/** What an adapter throws when NATS failed it: the port's StoreUnavailable, with what failed and why. */
export const unavailable = (what: string, e: unknown): StoreUnavailable => new StoreUnavailable(`${what}: ${textOf(e)}`)
