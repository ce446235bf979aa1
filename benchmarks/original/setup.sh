#!/usr/bin/env bash
# Make a venv that runs the ORIGINAL TinyLLaVA Factory (main @53f12c7) on Python 3.11, CPU.
#
#   bash benchmarks/original/setup.sh CHECKOUT_DIR VENV_DIR
#
# CHECKOUT_DIR: a checkout of TinyLLaVA Factory. If it does not exist and the git mirror named by $TLF_MIRROR
# (default /work/.mirror/TinyLLaVA+TinyLLaVA_Factory/repo) does, commit $TLF_COMMIT (default 53f12c7) is exported
# into it. The checkout is NOT pip-installed (its pyproject would pull torch 2.0.1, deepspeed, gradio, ...): the
# runners put it on sys.path themselves.
# VENV_DIR: created with python3 -m venv; torch 2.13.0 first (the CPU wheel on local disk: another version would
# pull a CUDA build), then requirements-original.txt.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 CHECKOUT_DIR VENV_DIR" >&2
  exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
CHECKOUT="$1"
VENV="$2"
MIRROR="${TLF_MIRROR:-/work/.mirror/TinyLLaVA+TinyLLaVA_Factory/repo}"
COMMIT="${TLF_COMMIT:-53f12c7}"
PYTHON="${PYTHON:-python3}"

if [ ! -f "$CHECKOUT/tinyllava/train/train.py" ]; then
  if [ -e "$CHECKOUT" ] && [ -n "$(ls -A "$CHECKOUT" 2>/dev/null)" ]; then
    echo "$CHECKOUT exists but is not a TinyLLaVA Factory checkout (no tinyllava/train/train.py)" >&2
    exit 1
  fi
  if [ ! -d "$MIRROR" ]; then
    echo "no checkout at $CHECKOUT and no git mirror at $MIRROR (set TLF_MIRROR)" >&2
    exit 1
  fi
  echo "exporting TinyLLaVA Factory $COMMIT from $MIRROR into $CHECKOUT"
  mkdir -p "$CHECKOUT"
  git --git-dir="$MIRROR" archive "$COMMIT" | tar -x -C "$CHECKOUT"
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || echo "warning: verified with Python 3.11 only" >&2
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --disable-pip-version-check torch==2.13.0
"$VENV/bin/pip" install --disable-pip-version-check -r "$HERE/requirements-original.txt"

# smoke check: the original's training and eval modules import through the shims
"$VENV/bin/python" - "$HERE" "$CHECKOUT" <<'PY'
import importlib, sys
sys.path.insert(0, sys.argv[1])
import tlf_shims
tlf_shims.install(sys.argv[2])
importlib.import_module("tinyllava.train.train")
importlib.import_module("tinyllava.training_recipe.lora_recipe")
importlib.import_module("tinyllava.eval.model_vqa_loader")
print("ok: TinyLLaVA Factory imports; shims:", ", ".join(tlf_shims.APPLIED))
PY
