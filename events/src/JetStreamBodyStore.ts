// The BodyStore port on a JetStream object store (replicated): bodies are chunked (128 KiB), so bodies larger than
// NATS's 1 MiB payload limit work. Addressed by SHA-256 digest; put is idempotent and resolves only after every
// chunk and the meta entry are acknowledged by the stream (a replica quorum). Must not hold anything but bodies.
import type { NatsConnection } from "@nats-io/transport-node"
import { Objm, type ObjectStore } from "@nats-io/obj"
import type { BodyStore } from "./BodyStore.js"
import { digestOf } from "./BodyStore.js"
import { BodyNotFound } from "./StoreError.js"
import { isGone, unavailable } from "./internal/NatsFault.js"

export interface JetStreamBodyStoreOptions {
  readonly nc: NatsConnection
  readonly prefix?: string
  readonly replicas?: number
}

export const bucketName = (prefix: string): string => `${prefix.replace(/[^A-Za-z0-9_-]/g, "_")}_bodies`

export const open = async (o: JetStreamBodyStoreOptions): Promise<BodyStore> => {
  const objm = new Objm(o.nc)
  const os: ObjectStore = await objm.create(bucketName(o.prefix ?? "missive"), { replicas: o.replicas ?? 1 })
  return {
    put: async (bytes) => {
      const digest = digestOf(bytes)
      try {
        const info = await os.info(digest)
        if (info && !info.deleted && info.size === bytes.length) return digest
        await os.putBlob({ name: digest }, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
        return digest
      } catch (e) {
        throw unavailable("body store put failed", e)
      }
    },
    get: async (digest) => {
      let b: Uint8Array | null
      try {
        b = await os.getBlob(digest)
      } catch (e) {
        throw unavailable("body store get failed", e)
      }
      if (!b) throw new BodyNotFound(digest)
      return Buffer.from(b.buffer, b.byteOffset, b.byteLength)
    },
    delete: async (digest) => {
      try {
        await os.delete(digest)
      } catch (e) {
        if (isGone(e)) return
        throw unavailable("body store delete failed", e)
      }
    },
    close: async () => {}
  }
}
