// The scheduler's concurrency control: at most N deliveries at once per destination, and M in all.
// FIFO per destination; a destination that is full never blocks another. Must not decide what happens to a message.

export interface Limiter {
  run<T>(key: string, task: () => Promise<T>): Promise<T>
  /** Deliveries running now, per destination. */
  running(): ReadonlyMap<string, number>
  waiting(): number
}

interface Lane {
  running: number
  readonly queue: Array<() => void>
}

export const make = (opts: { perDestination: number; total: number }): Limiter => {
  const lanes = new Map<string, Lane>()
  let total = 0
  const ready: Array<string> = []

  const pump = () => {
    // Start waiting tasks while capacity lasts, round-robin over destinations for fairness.
    let progressed = true
    while (progressed && total < opts.total && ready.length > 0) {
      progressed = false
      for (let i = 0; i < ready.length && total < opts.total; i++) {
        const key = ready[i]!
        const lane = lanes.get(key)
        if (!lane || lane.running >= opts.perDestination || lane.queue.length === 0) continue
        const start = lane.queue.shift()!
        lane.running += 1
        total += 1
        progressed = true
        start()
      }
      for (let i = ready.length - 1; i >= 0; i--) if ((lanes.get(ready[i]!)?.queue.length ?? 0) === 0) ready.splice(i, 1)
    }
  }

  return {
    run: (key, task) =>
      new Promise((resolve, reject) => {
        let lane = lanes.get(key)
        if (!lane) lanes.set(key, (lane = { running: 0, queue: [] }))
        const l = lane
        l.queue.push(() => {
          task()
            .then(resolve, reject)
            .finally(() => {
              l.running -= 1
              total -= 1
              if (l.running === 0 && l.queue.length === 0) lanes.delete(key)
              pump()
            })
        })
        if (!ready.includes(key)) ready.push(key)
        pump()
      }),
    running: () => new Map([...lanes].filter(([, l]) => l.running > 0).map(([k, l]) => [k, l.running])),
    waiting: () => [...lanes.values()].reduce((n, l) => n + l.queue.length, 0)
  }
}
