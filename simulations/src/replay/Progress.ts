// A progress bar for commands that read a large log: cli-progress on stderr, and only when stderr is a terminal
// (never in pipes, files or tests). Must not write to stdout.
import cliProgress from "cli-progress"

export interface Progress {
  update(done: number, total?: number): void
  stop(): void
}

const noop: Progress = { update: () => {}, stop: () => {} }

export const start = (label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress => {
  if (!stream.isTTY || total <= 0) return noop
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} [{bar}] {percentage}% | {value}/{total} events | eta {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
      fps: 5
    },
    cliProgress.Presets.shades_classic
  )
  bar.start(total, 0)
  return {
    update: (done, t) => {
      if (t !== undefined && t !== total) {
        total = t
        bar.setTotal(t)
      }
      bar.update(Math.min(done, total))
    },
    stop: () => bar.stop()
  }
}
