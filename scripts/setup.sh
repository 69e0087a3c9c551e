#!/usr/bin/env bash
# Installs everything asr-distill needs on a fresh Debian machine (run as root):
# Debian's flite, espeak-ng, sox and fortunes for the synthetic corpus, then the
# package itself with its dev extras. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
command -v flite >/dev/null 2>&1 || apt_pkgs+=(flite)
command -v espeak-ng >/dev/null 2>&1 || apt_pkgs+=(espeak-ng)
command -v sox >/dev/null 2>&1 || apt_pkgs+=(sox)
[ -f /usr/share/games/fortunes/fortunes ] || apt_pkgs+=(fortunes-min)
[ -f /usr/share/games/fortunes/computers ] || apt_pkgs+=(fortunes)
if ((${#apt_pkgs[@]})); then
  echo "setup: installing Debian packages: ${apt_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${apt_pkgs[@]}" >/dev/null
fi

if ! python3 -c "import asr_distill, pytest, xdist, ruff, kaldi_native_fbank, wordfreq, numba" >/dev/null 2>&1 \
   || ! command -v asr-distill >/dev/null 2>&1; then
  echo "setup: pip install -e .[dev]"
  python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
fi
