#!/usr/bin/env bash
# Installs what Missive needs beyond `npm ci`, on Debian bookworm (or later), and prints the environment to use it:
#
#   - Node.js $NODE_VERSION from the npm registry package `node-linux-<arch>` into a private prefix
#     ($MISSIVE_TOOLCHAIN, default <repo>/.toolchain/node-<version>; nothing system-wide, no root needed);
#   - nats-server >= 2.11.0 (2.10.23 was the first with `jetstream { sync_interval: always }`; 2.10 can remove a
#     work-queue message never delivered after a consumer leader change, fixed in 2.11.0 — ARCHITECTURE.md, "What a
#     250 means in a cluster"): the machine's if it is recent enough, else Debian's candidate if that is, else the
#     binary of Debian testing's (forky) package, fetched with a private apt configuration and unpacked into
#     <repo>/.toolchain/nats-server-<version> (first on PATH) and installed as /usr/local/bin/nats-server (nothing
#     added to the machine's apt sources, no maintainer scripts run: forky's need a newer systemd than bookworm's);
#   - swaks and Postfix's smtp-source/smtp-sink (tests and benchmarks), and Postfix's daemon stopped;
#   - chromium (headless, for the tests that open HTML reports and pages).
#
# Usage:   eval "$(bash scripts/setup.sh)"            # everything (apt-get needs root, or sudo)
#          eval "$(bash scripts/setup.sh --node-only)" # only the private Node.js; no apt-get, no root
# Progress goes to stderr; stdout is only the `export` lines (PATH with Node's bin first, npm_config_nodedir so that
# node-gyp builds better-sqlite3 against this Node's headers, not the machine's).
set -euo pipefail

NODE_VERSION=24.22.3
NATS_MIN=2.11.0
repo=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "setup: $*" >&2; }
die() { echo "setup: $*" >&2; exit 1; }

node_only=false
for a in "$@"; do
  case "$a" in
    --node-only) node_only=true ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 0 ;;
    *) die "unknown option $a (see --help)" ;;
  esac
done

# ---- Node.js from the npm registry ------------------------------------------------------------------------------
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) die "no node-linux package for $(uname -m)" ;;
esac
prefix=${MISSIVE_TOOLCHAIN:-$repo/.toolchain}/node-$NODE_VERSION
if [ "$("$prefix/bin/node" --version 2>/dev/null || true)" = "v$NODE_VERSION" ]; then
  say "node $NODE_VERSION already in $prefix"
else
  say "installing node $NODE_VERSION (npm package node-linux-$arch) into $prefix"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if command -v npm >/dev/null 2>&1; then
    # npm pack: the registry, proxy and auth of the machine's npm configuration, and the integrity check.
    (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_VERSION" >/dev/null)
  else
    registry=${npm_config_registry:-https://registry.npmjs.org/}
    curl -fsSL "${registry%/}/node-linux-$arch/-/node-linux-$arch-$NODE_VERSION.tgz" -o "$tmp/node-linux-$arch-$NODE_VERSION.tgz"
  fi
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/node-linux-$arch-$NODE_VERSION.tgz" -C "$tmp/x"
  [ "$("$tmp/x/package/bin/node" --version)" = "v$NODE_VERSION" ] || die "the package's bin/node is not v$NODE_VERSION"
  [ -f "$tmp/x/package/include/node/node.h" ] || die "the package has no include/node headers (node-gyp needs them)"
  rm -rf "$prefix"
  mkdir -p "$(dirname "$prefix")"
  mv "$tmp/x/package" "$prefix"
fi
export PATH="$prefix/bin:$PATH" npm_config_nodedir="$prefix"
# The package has no npm: the machine's npm runs under this node (its `#!/usr/bin/env node`). Without one, npm
# itself from the registry, into the same prefix.
if ! command -v npm >/dev/null 2>&1; then
  say "no npm on the machine: installing npm 11 into $prefix"
  registry=${npm_config_registry:-https://registry.npmjs.org/}
  ver=11.21.2
  mkdir -p "$prefix/lib/node_modules/npm"
  curl -fsSL "${registry%/}/npm/-/npm-$ver.tgz" | tar -xz -C "$prefix/lib/node_modules/npm" --strip-components=1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$prefix/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$prefix/bin/npx"
fi

# ---- Debian packages --------------------------------------------------------------------------------------------
nats_version() { nats-server --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1 || true; }
version_ge() { [ -n "$1" ] && dpkg --compare-versions "$1" ge "$2"; }

if ! $node_only; then
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install nats-server >= $NATS_MIN, swaks and postfix yourself, or use --node-only"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "apt-get needs root: run as root, install sudo, or use --node-only"
    sudo=sudo
  fi
  apt() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
  need=()
  command -v swaks >/dev/null 2>&1 || need+=(swaks)
  command -v smtp-source >/dev/null 2>&1 || need+=(postfix)
  # headless Chromium for the tests that open HTML reports and the dashboard (driven by playwright-core)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # the content scanners the filter tests start on loopback (test/src/Rspamd.ts, Clamd.ts): rspamd also serves as the
  # real milter (its proxy worker in milter mode); clamd runs with a signature database the test writes
  command -v rspamd >/dev/null 2>&1 || need+=(rspamd)
  command -v clamd >/dev/null 2>&1 || need+=(clamav-daemon)
  # the outbound TLS tests' throw-away CA (test/src/Pki.ts: MTA-STS policy hosts, MX certificates)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  # DANE tests: a zone signed with ldnsutils, served and validated by two unbound instances (test/src/Unbound.ts)
  command -v unbound >/dev/null 2>&1 || need+=(unbound)
  command -v ldns-signzone >/dev/null 2>&1 || need+=(ldnsutils)
  have=$(nats_version)
  nats=false
  version_ge "$have" "$NATS_MIN" || nats=true
  if $nats || [ ${#need[@]} -gt 0 ]; then
    apt update -qq
    if $nats; then
      candidate=$(apt-cache policy nats-server | awk '/Candidate:/ {print $2}')
      if version_ge "${candidate%%-*}" "$NATS_MIN"; then need+=(nats-server); else private_nats=true; fi
    fi
    if [ ${#need[@]} -gt 0 ]; then
      say "installing ${need[*]}"
      apt install -y -qq "${need[@]}" >/dev/null
    fi
  fi
  if ${private_nats:-false}; then
    # Not in this release (bookworm has 2.9, trixie 2.10): forky's package, through an apt configuration of its own
    # (its lists and cache under the toolchain directory), unpacked, its binary alone kept.
    say "nats-server ${have:-missing}, Debian's candidate ${candidate:-none} < $NATS_MIN: fetching forky's (/usr/local/bin)"
    aptdir=${MISSIVE_TOOLCHAIN:-$repo/.toolchain}/apt-forky
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: forky' 'Components: main' \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$aptdir/forky.sources"
    private=(-o "Dir::Etc::SourceList=$aptdir/forky.sources" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$aptdir/lists"
      -o "Dir::Cache=$aptdir/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${private[@]}" update -qq || die "apt-get update of forky failed"
    ntmp=$(mktemp -d)
    (cd "$ntmp" && apt-get "${private[@]}" download nats-server >/dev/null) || die "apt-get download nats-server (forky) failed"
    dpkg-deb -x "$ntmp"/nats-server_*.deb "$ntmp/x"
    bin=$(find "$ntmp/x" -type f -name nats-server -perm -u+x | head -1)
    [ -n "$bin" ] || die "forky's nats-server package has no nats-server binary"
    ver=$("$bin" --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)
    version_ge "$ver" "$NATS_MIN" || die "forky's nats-server is ${ver:-unknown} < $NATS_MIN"
    dest=${MISSIVE_TOOLCHAIN:-$repo/.toolchain}/nats-server-$ver
    mkdir -p "$dest"
    install -m 0755 "$bin" "$dest/nats-server"
    # Also where a shell without these exports finds it first (/usr/local/bin precedes /usr/sbin, where Debian's
    # package puts an older one): `missive cluster up` run from any shell gets this one.
    $sudo install -m 0755 "$bin" /usr/local/bin/nats-server
    rm -rf "$ntmp"
    export PATH="$dest:$PATH"
  fi
  got=$(nats_version)
  version_ge "$got" "$NATS_MIN" || die "nats-server ${got:-missing} after install; Missive's cluster needs >= $NATS_MIN"
  # Debian's postfix package starts a daemon on port 25; the tests do not need it.
  command -v postfix >/dev/null 2>&1 && { $sudo postfix stop >/dev/null 2>&1 || true; }
  say "nats-server $got, swaks, smtp-source: ok"
fi

say "node $(node --version) ($(command -v node)), npm $(npm --version)"
printf 'export PATH=%q\nexport npm_config_nodedir=%q\n' "$PATH" "$prefix"
