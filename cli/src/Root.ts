// The refusal to run a long-lived process as root: `missive start` and `missive cluster up` (which starts nodes)
// stop before doing anything unless `--allow-root` is given. Postfix's habit: the server holds no more privilege
// than it needs; deploy/missive.service runs Missive as its own user with only CAP_NET_BIND_SERVICE for port 25.
// Checks the effective user only; must not change users or drop privileges itself.

/** What `missive start` as root says on stderr before it exits 1. */
export const REFUSAL =
  "missive: refusing to run as root. Run it as an unprivileged user (deploy/missive.service runs it as the user\n" +
  "  'missive' and grants port 25 with AmbientCapabilities=CAP_NET_BIND_SERVICE), or pass --allow-root to run it\n" +
  "  as root anyway (containers, CI)\n"

/** The refusal to print when the process runs as root without `--allow-root`; undefined when it may run. */
export const refusal = (allowRoot: boolean, uid: number | undefined = process.geteuid?.()): string | undefined =>
  uid === 0 && !allowRoot ? REFUSAL : undefined
