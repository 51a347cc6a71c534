#!/usr/bin/env bash
# Provisions a real kube-apiserver (built offline from Debian's kubernetes source package with Go 1.15) and etcd under ~/.cache, keyed by version.
#
# Usage: scripts/kube-apiserver.sh [provision|path|check]
#   provision  build/unpack if not cached (idempotent, concurrency-safe), then print the bin directory
#   path       print the bin directory (exit 1 if not provisioned)
#   check      exit 0 if provisioned, 1 if not
#
# Nothing is installed system-wide except `rsync` (needed by kubernetes' make; installed with
# apt-get only when missing and running as root). Every Debian package comes through a private apt
# configuration (its own sources list, lists and archive directories) inside the cache directory.
# The cache is never inside the repository.
set -euo pipefail

KUBE_VERSION="1.20.2"
KUBE_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
GO_DEB_VERSION="1.15.15-1~deb11u4"
ETCD_MIN_VERSION="3.4.23"
MIRROR="${CONTRAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${CONTRAST_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

CACHE="${CONTRAST_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/contrast-kube/$KUBE_VERSION}"
BIN="$CACHE/bin"

log() { printf 'kube-apiserver.sh: %s\n' "$*" >&2; }

provisioned() {
  [[ -x "$BIN/kube-apiserver" && -x "$BIN/etcd" && -f "$BIN/.complete" ]] || return 1
  "$BIN/kube-apiserver" --version >/dev/null 2>&1 && "$BIN/etcd" --version >/dev/null 2>&1
}

cmd="${1:-provision}"
case "$cmd" in
  check) provisioned; exit $? ;;
  path) provisioned || { log "not provisioned in $CACHE"; exit 1; }; echo "$BIN"; exit 0 ;;
  provision) ;;
  *) log "unknown command: $cmd"; exit 2 ;;
esac

if provisioned; then echo "$BIN"; exit 0; fi

mkdir -p "$CACHE"
# One provisioner at a time (parallel test runs, a developer and CI on one machine).
exec 9>"$CACHE/.lock"
flock 9
if provisioned; then echo "$BIN"; exit 0; fi

start=$(date +%s)
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/cache"
cat >"$APT/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm-updates main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY_MIRROR bookworm-security main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY_MIRROR bookworm-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bullseye main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY_MIRROR bullseye-security main
EOF
apt_opts=(
  -o "Dir::Etc::SourceList=$APT/sources.list"
  -o "Dir::Etc::SourceParts=$APT/none"
  -o "Dir::State::Lists=$APT/lists"
  -o "Dir::Cache=$APT/cache"
  -o "Dir::Cache::Archives=$APT/archives"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=$(id -un)"
  -o "Acquire::Retries=3"
  -q
)
papt() { apt-get "${apt_opts[@]}" "$@"; }

# Tools the kubernetes build needs that a minimal Debian may lack (rsync, make; dpkg-source is optional).
missing=()
command -v rsync >/dev/null || missing+=(rsync)
command -v make >/dev/null || missing+=(make)
if (( ${#missing[@]} > 0 )); then
  if [[ $(id -u) -eq 0 ]]; then
    log "installing ${missing[*]} (needed by the kubernetes build)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing ${missing[*]} and this is not root: install them"; exit 1
  fi
fi

log "updating the private package lists ($APT)"
papt update >/dev/null

WORK="$CACHE/work"
rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/debs" "$BIN.tmp"

# etcd: unpacked, never installed (an installed package may start a system service on 2379).
(cd "$WORK/debs" && papt download etcd-server >/dev/null)
dpkg -x "$WORK"/debs/etcd-server_*.deb "$WORK/etcd"
cp "$WORK/etcd/usr/bin/etcd" "$BIN.tmp/etcd"
etcd_version=$("$BIN.tmp/etcd" --version | sed -n 's/^etcd Version: //p')
log "etcd $etcd_version (want >= $ETCD_MIN_VERSION)"

# Go 1.15 from bullseye: Go finds its root from the binary's location.
(cd "$WORK/debs" && papt download "golang-1.15-go=$GO_DEB_VERSION" "golang-1.15-src=$GO_DEB_VERSION" >/dev/null)
for deb in "$WORK"/debs/golang-1.15-*.deb; do dpkg -x "$deb" "$WORK/go"; done
GOBIN_DIR="$WORK/go/usr/lib/go-1.15/bin"
"$GOBIN_DIR/go" version >&2

# The kubernetes source package: the complete upstream tree including vendor/.
log "fetching the kubernetes $KUBE_DEB_VERSION source package"
(cd "$WORK/src" && papt source --download-only "kubernetes=$KUBE_DEB_VERSION" >/dev/null)
if command -v dpkg-source >/dev/null; then
  (cd "$WORK/src" && dpkg-source --no-check -x ./*.dsc tree >/dev/null)
else
  # Without dpkg-dev: the upstream tree is the orig tarball (component tarballs go into their directory).
  mkdir -p "$WORK/src/tree"
  for tarball in "$WORK"/src/*.orig.tar.* "$WORK"/src/*.orig-*.tar.*; do
    [[ -e "$tarball" ]] || continue
    base=$(basename "$tarball")
    if [[ "$base" == *.orig-*.tar.* ]]; then
      component=${base#*.orig-}; component=${component%%.tar.*}
      mkdir -p "$WORK/src/tree/$component"
      tar -xf "$tarball" -C "$WORK/src/tree/$component" --strip-components=1
    else
      tar -xf "$tarball" -C "$WORK/src/tree" --strip-components=1
    fi
  done
fi
TREE="$WORK/src/tree"
[[ -d "$TREE/vendor" ]] || { log "the source tree has no vendor/"; exit 1; }

log "building kube-apiserver (offline, about 3.5 minutes on 2 cores)"
(
  cd "$TREE"
  export PATH="$GOBIN_DIR:$PATH"
  unset GOROOT GOPATH
  export GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0 GO111MODULE=on
  export GOCACHE="$WORK/gocache"
  export KUBE_GIT_VERSION="v$KUBE_VERSION" KUBE_GIT_TREE_STATE=archive KUBE_GIT_COMMIT=0000000000000000000000000000000000000000
  make WHAT=cmd/kube-apiserver >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
)
built=$(find "$TREE/_output" -type f -name kube-apiserver -perm -u+x | head -1)
[[ -n "$built" ]] || { log "the build produced no kube-apiserver"; exit 1; }
cp "$built" "$BIN.tmp/kube-apiserver"
"$BIN.tmp/kube-apiserver" --version >&2

rm -rf "$BIN"
mv "$BIN.tmp" "$BIN"
touch "$BIN/.complete"
rm -rf "$WORK" "$APT"
log "provisioned in $(( $(date +%s) - start )) s: $BIN"
echo "$BIN"
