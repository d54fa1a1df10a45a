#!/usr/bin/env bash
# Set up divff-nerfstudio on a fresh Debian/x86_64 machine: system packages, .venv at the repo root
# with the torch/torchvision pair that works here, nerfstudio and the project (editable).
# Idempotent: a second run checks each step and skips what is already in place.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nsetup.sh FAILED at step: %s\n' "$current" >&2; }
trap fail ERR

current="system packages (libusb, colmap, ffmpeg; chromium and its driver for the viewer's browser test)"
step "$current"
missing=()
dpkg -s libusb-1.0-0 >/dev/null 2>&1 || missing+=(libusb-1.0-0)
command -v colmap >/dev/null 2>&1 || missing+=(colmap)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "already installed"
fi

current="python virtual environment at $venv"
step "$current"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)

current="torch 2.14.1 + torchvision 0.29.1 (before nerfstudio, so pip keeps this build)"
step "$current"
if ! "$venv/bin/python" -c 'import torch, torchvision; assert torch.__version__.startswith("2.14.1")' 2>/dev/null; then
  "${pip[@]}" torch==2.14.1 torchvision==0.29.1
else
  echo "already installed"
fi

current="nerfstudio, open_clip, pycolmap, transformers and the project (editable, with test extras)"
step "$current"
"${pip[@]}" -e "$repo[test]"

current="import check"
step "$current"
"$venv/bin/python" -c 'import nerfstudio, open_clip, pycolmap, transformers, divff_nerfstudio, dataparsers; print("ok")'
trap - ERR
echo "setup done: activate with 'source $venv/bin/activate'"
