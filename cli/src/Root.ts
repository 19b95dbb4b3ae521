// Running a long-lived process as root: `missive start` and `missive cluster up` (which starts nodes) warn on stderr
// unless `--allow-root` is given, and go on. Postfix's habit is that the server holds no more privilege than it
// needs: deploy/missive.service runs Missive as its own user with only CAP_NET_BIND_SERVICE for port 25. A warning
// rather than a refusal keeps the README's first command (`npx missive start`) working where root is all there is
// (containers, CI). Checks the effective user only; must not change users or drop privileges itself.

/** What `missive start` as root says on stderr before it starts. */
export const WARNING =
  "missive: warning: running as root. Run it as an unprivileged user (deploy/missive.service runs it as the user\n" +
  "  'missive' and grants port 25 with AmbientCapabilities=CAP_NET_BIND_SERVICE), or pass --allow-root to say that\n" +
  "  root is meant (containers, CI) and silence this warning\n"

/** The warning to print when the process runs as root without `--allow-root`; undefined otherwise. */
export const rootWarning = (allowRoot: boolean, uid: number | undefined = process.geteuid?.()): string | undefined =>
  uid === 0 && !allowRoot ? WARNING : undefined
