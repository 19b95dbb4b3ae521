// The replay snapshots port: the set of message streams open (received, not completed) after every event up to a log
// position, saved at intervals so that `replay queue --at` and `report` on a log without an index (JetStream) fold
// from the nearest snapshot instead of position 0. Stores only: what a snapshot holds and when one is taken is
// `Replay.Log.openStreams`'s (simulations). Derived data: losing every snapshot loses nothing but time.
export interface Snapshot {
  /** Every event at a position up to this one is folded in. */
  readonly position: number
  /** The latest event time among them: the snapshot answers for any moment at or after it. */
  readonly maxAt: number
  /** Streams received and not completed, each with the log position of its `MessageReceived`, in no order. */
  readonly open: ReadonlyArray<readonly [stream: string, first: number]>
}

export interface SnapshotStore {
  /** Take one every this many log positions (default: replay's `SNAPSHOT_EVERY`); tests take them closer. */
  readonly every?: number
  /** The snapshots held (position and newest event time), in no order. */
  list(): Promise<ReadonlyArray<{ readonly position: number; readonly maxAt: number }>>
  load(position: number): Promise<Snapshot | undefined>
  /** Idempotent: saving a position again (another replay run) keeps one. */
  save(s: Snapshot): Promise<void>
  clear(): Promise<void>
  close(): Promise<void>
}

export const makeMemory = (every?: number): SnapshotStore => {
  const m = new Map<number, Snapshot>()
  return {
    ...(every === undefined ? {} : { every }),
    list: async () => [...m.values()].map((s) => ({ position: s.position, maxAt: s.maxAt })),
    load: async (position) => m.get(position),
    save: async (s) => void m.set(s.position, { ...s, open: [...s.open] }),
    clear: async () => m.clear(),
    close: async () => {}
  }
}
