#!/usr/bin/env bash
# Provisions a real kube-apiserver (built offline from Debian's kubernetes source package with Go 1.15) and etcd under ~/.cache, keyed by version.
#
# Usage: scripts/kube-apiserver.sh [provision|path|check|sources]
#   provision  build/unpack if not cached (idempotent, concurrency-safe), then print the bin directory
#   path       print the bin directory (exit 1 if not provisioned)
#   check      exit 0 if provisioned, 1 if not
#   sources    print the private apt sources (deb822) that provisioning would use, and exit
#
# Nothing is installed system-wide except `rsync` (needed by kubernetes' make; installed with
# apt-get only when missing and running as root). Every Debian package comes through a private apt
# configuration (its own sources, lists and archive directories) inside the cache directory.
# The cache is never inside the repository.
#
# The private sources name no mirror: they are derived from the machine's own apt configuration,
# the files `apt-config` names as Dir::Etc::SourceList and Dir::Etc::SourceParts (one-line `.list`
# and deb822 `.sources` alike; APT_CONFIG is honoured). The URIs of its enabled Debian entries
# (`deb`, component main) are kept as they are, with their Signed-By: those of a `*-security` suite
# serve bookworm-security and bullseye-security, the others bookworm and bookworm-updates (both
# with deb-src) and bullseye (for Go 1.15). Whatever mirror or proxy the machine uses, this follows.
set -euo pipefail

KUBE_VERSION="1.20.2"
KUBE_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
GO_DEB_VERSION="1.15.15-1~deb11u4"
ETCD_MIN_VERSION="3.4.23"

CACHE="${CONTRAST_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/contrast-kube/$KUBE_VERSION}"
BIN="$CACHE/bin"

log() { printf 'kube-apiserver.sh: %s\n' "$*" >&2; }

provisioned() {
  [[ -x "$BIN/kube-apiserver" && -x "$BIN/etcd" && -f "$BIN/.complete" ]] || return 1
  "$BIN/kube-apiserver" --version >/dev/null 2>&1 && "$BIN/etcd" --version >/dev/null 2>&1
}

# The machine's Debian archive URIs, one line each: `main` or `security`, TAB, the URI, TAB, its
# Signed-By (an embedded key's lines joined by a literal `\n`), from its own apt source files.
machine_debian_uris() {
  local SL="" SP="" f files=()
  eval "$(apt-config shell SL Dir::Etc::SourceList/f SP Dir::Etc::SourceParts/d)"
  [[ -n $SL && -f $SL ]] && files+=("$SL")
  if [[ -n $SP && -d $SP ]]; then
    for f in "${SP%/}"/*.list "${SP%/}"/*.sources; do [[ -f $f ]] && files+=("$f"); done
  fi
  (( ${#files[@]} > 0 )) || return 0
  # The first entry of a URI wins (two Signed-By values for one URI would make apt refuse the list).
  awk -f - "${files[@]}" <<'AWK' | awk -F '\t' '!seen[$1 FS $2]++'
function debian(suite) {
  return suite ~ /^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)(-updates|-security|-backports|-proposed-updates)?$/
}
function emit(uri, suite, signedby) {
  if (!debian(suite)) return
  sub(/\/+$/, "", uri)
  print ((suite ~ /-security$/) ? "security" : "main") "\t" uri "\t" signedby
}
function has(list, word,    n, i, a) {
  n = split(list, a, /[ \t]+/)
  for (i = 1; i <= n; i++) if (a[i] == word) return 1
  return 0
}
# deb822: one stanza ends; emit every URI x suite of an enabled `deb` stanza with component main.
function stanza_end(    nu, ns, i, j, u, s) {
  if (tolower(f["enabled"]) != "no" && has(f["types"], "deb") && has(f["components"], "main")) {
    nu = split(f["uris"], u, /[ \t]+/)
    ns = split(f["suites"], s, /[ \t]+/)
    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) if (u[i] != "" && s[j] != "") emit(u[i], s[j], f["signed-by"])
  }
  split("", f)
  key = ""
}
FNR == 1 { if (deb822) stanza_end(); deb822 = (FILENAME ~ /\.sources$/); key = "" }
deb822 {
  if ($0 ~ /^#/) next
  if ($0 ~ /^[ \t]*$/) { stanza_end(); next }
  if ($0 ~ /^[ \t]/) {
    if (key == "") next
    line = $0
    sub(/^[ \t]+/, "", line)
    f[key] = (f[key] == "") ? line : f[key] "\\n" line
    next
  }
  i = index($0, ":")
  if (i == 0) next
  key = tolower(substr($0, 1, i - 1))
  value = substr($0, i + 1)
  sub(/^[ \t]+/, "", value)
  sub(/[ \t]+$/, "", value)
  f[key] = value
  next
}
# One-line format: deb [ options ] uri suite component...
{
  line = $0
  sub(/#.*/, "", line)
  signedby = ""
  if (match(line, /\[[^]]*\]/)) {
    opts = substr(line, RSTART + 1, RLENGTH - 2)
    line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH)
    n = split(opts, o, /[ \t]+/)
    for (i = 1; i <= n; i++) if (o[i] ~ /^signed-by=/) signedby = substr(o[i], 11)
  }
  n = split(line, w, /[ \t]+/)
  k = 0
  for (i = 1; i <= n; i++) if (w[i] != "") t[++k] = w[i]
  if (k < 4 || t[1] != "deb") next
  for (i = 4; i <= k; i++) if (t[i] == "main") { emit(t[2], t[3], signedby); break }
}
END { if (deb822) stanza_end() }
AWK
}

# The private sources (deb822) derived from the machine's Debian URIs; fails if it has none.
private_sources() {
  local uris kind uri signedby types suites
  uris=$(machine_debian_uris)
  if ! grep -q '^main' <<<"$uris"; then
    log "no enabled Debian source (deb, component main) in the machine's apt configuration; configure one (e.g. bookworm main) first"
    return 1
  fi
  grep -q '^security' <<<"$uris" || log "note: the machine's apt configuration has no *-security source; using the main archive only"
  while IFS=$'\t' read -r kind uri signedby; do
    for types in "deb deb-src" "deb"; do
      if [[ $kind == main ]]; then
        if [[ $types == deb ]]; then suites="bullseye"; else suites="bookworm bookworm-updates"; fi
      else
        if [[ $types == deb ]]; then suites="bullseye-security"; else suites="bookworm-security"; fi
      fi
      printf 'Types: %s\nURIs: %s\nSuites: %s\nComponents: main\n' "$types" "$uri" "$suites"
      if [[ $signedby == *'\n'* ]]; then
        # An embedded key goes back to deb822 continuation lines.
        printf 'Signed-By:\n %s\n' "${signedby//\\n/$'\n' }"
      elif [[ -n $signedby ]]; then
        printf 'Signed-By: %s\n' "$signedby"
      fi
      printf '\n'
    done
  done <<<"$uris"
}

cmd="${1:-provision}"
case "$cmd" in
  check) provisioned; exit $? ;;
  sources) private_sources; exit $? ;;
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
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/cache" "$APT/sources.list.d"
private_sources >"$APT/sources.list.d/contrast-kube.sources"
apt_opts=(
  -o "Dir::Etc::SourceList=$APT/none.list"
  -o "Dir::Etc::SourceParts=$APT/sources.list.d"
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
