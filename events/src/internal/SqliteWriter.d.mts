import type Database from "better-sqlite3"

export type WriteOp =
  | { k: "append"; stream: string; expected: number; data: Array<string>; types: Array<string>; ats: Array<number> }
  | { k: "put"; digest: string; bytes: Buffer | Uint8Array }
  | { k: "del"; digest: string }
  | { k: "sched"; id: string; due: number; owner: string | null; until: number }
  | { k: "done"; id: string }
  | { k: "claim"; now: number; limit: number; owner: string; until: number }
  | { k: "release"; owner: string }

export type WriteResult =
  { ok: true; value: unknown } | { ok: false; error: { message: string; conflict?: { stream: string; expected: number; actual: number } } }

export declare const SCHEMA: string
export declare const configure: (db: Database.Database, synchronous: string) => void
export declare const prepareWriter: (
  db: Database.Database,
  segmentsDir?: string,
  segmentBytes?: number
) => ((ops: ReadonlyArray<WriteOp>) => Array<WriteResult>) & { close(): void }
