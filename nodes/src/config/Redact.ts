// The configuration with every secret replaced: password hashes, HTTP token hashes, rspamd's password, DKIM private
// keys, event webhooks' signing secrets, credentials in URLs. The one
// redaction: the admin API's effective-config endpoint shows it and `PolicyActivated` stores it. Must not drop
// anything else: what is not a secret is what an operator reads back to know what the node ran with.
import type { Config } from "./Config.js"

export const REDACTED = "[redacted]"

/** userinfo of a URL ("nats://user:pass@host") replaced; anything else unchanged. */
const scrubUrl = (u: string): string => u.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]+@/i, `$1${REDACTED}@`)

export const redact = (c: Config): Readonly<Record<string, unknown>> => ({
  ...c,
  auth: { ...c.auth, users: c.auth.users.map((u) => ({ name: u.name, password: REDACTED })) },
  http: { ...c.http, tokens: c.http.tokens.map((t) => ({ name: t.name, scope: t.scope, hash: REDACTED })) },
  cluster: { ...c.cluster, nats: c.cluster.nats.map(scrubUrl) },
  store: { ...c.store, eventstoredb: c.store.eventstoredb === null ? null : scrubUrl(c.store.eventstoredb) },
  filter: {
    ...c.filter,
    rspamd: { ...c.filter.rspamd, password: c.filter.rspamd.password === null ? null : REDACTED },
    dkim: { ...c.filter.dkim, keys: c.filter.dkim.keys.map((k) => ({ ...k, key: REDACTED })) }
  },
  events: {
    ...c.events,
    destinations: c.events.destinations.map((d) => ({
      ...d,
      webhook: d.webhook === null ? null : scrubUrl(d.webhook),
      secret: d.secret === null ? null : REDACTED
    }))
  }
})
