// The delivery thread's entry (nodes/src/delivery/Thread.ts starts it): serves the deliverer over the parent port.
// Plain JavaScript so that it is copied to dist/ as is; it imports the compiled Thread module beside it.
import { parentPort, workerData } from "node:worker_threads"
import { serve } from "../Thread.js"

if (parentPort) serve(parentPort, workerData)
