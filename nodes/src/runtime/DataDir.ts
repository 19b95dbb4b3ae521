// The node's data directory as a service, locked for as long as its scope lives: a second node on the same
// directory is refused (`DataDirInUse`); a lock left by a killed process is taken over. Must not hold anything else.
import { Context, Effect, Layer } from "effect"
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { DataDirInUse } from "../NodeError.js"

export class DataDirService extends Context.Service<DataDirService, { readonly path: string }>()("missive/DataDir") {}

const holder = (lock: string): number | undefined => {
  try {
    const pid = Number(readFileSync(lock, "utf8").trim())
    if (!pid || pid === process.pid) return undefined
    try {
      process.kill(pid, 0)
    } catch {
      return undefined
    }
    return pid
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
}

const lock = (dir: string): Effect.Effect<string, DataDirInUse> =>
  Effect.suspend(() => {
    mkdirSync(dir, { recursive: true })
    const path = join(dir, "missive.lock")
    const pid = holder(path)
    if (pid !== undefined) return Effect.fail(new DataDirInUse(dir, pid, path))
    writeFileSync(path, `${process.pid}\n`)
    closeSync(openSync(path, "r"))
    return Effect.succeed(path)
  })

/** Creates and locks `dir` (resolved against the working directory); the lock goes with the scope. */
export const layerLocked = (dir: string): Layer.Layer<DataDirService, DataDirInUse> =>
  Layer.effect(
    DataDirService,
    Effect.acquireRelease(lock(resolve(dir)), (path) => Effect.sync(() => rmSync(path, { force: true }))).pipe(
      Effect.as({ path: resolve(dir) })
    )
  )
