// The BodyStore port: message bodies addressed by their SHA-256 digest; put is idempotent.
// Bodies never travel inside events (NATS's payload limit, and the log stays small).
import { createHash } from "node:crypto"
import { BodyNotFound } from "./StoreError.js"

export interface BodyStore {
  /** Stores bytes under their digest; a caller that already computed the digest passes it (it is not checked). */
  put(bytes: Buffer, digest?: string): Promise<string>
  /** `id` is the message the body belongs to: a store that files bodies by message finds it by that; others ignore it. */
  get(digest: string, id?: string): Promise<Buffer>
  delete(digest: string): Promise<void>
  close(): Promise<void>
}

export const digestOf = (bytes: Buffer): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

export const makeMemory = (): BodyStore => {
  const bodies = new Map<string, Buffer>()
  return {
    put: async (bytes, digest) => {
      const d = digest ?? digestOf(bytes)
      bodies.set(d, Buffer.from(bytes))
      return d
    },
    get: async (digest) => {
      const b = bodies.get(digest)
      if (!b) throw new BodyNotFound(digest)
      return b
    },
    delete: async (digest) => void bodies.delete(digest),
    close: async () => {}
  }
}
