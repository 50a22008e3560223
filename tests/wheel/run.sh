#!/usr/bin/env bash
# `make test-wheel`: build the wheel, install it (not the editable tree) into a fresh venv with the 3.3 pins,
# and run the provider's smoke checks there, from a folder outside the checkout so that nothing can be imported
# from the source tree: a file missing from the wheel fails here.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
UV=${UV:-.venv/bin/uv}
WORK=$(mktemp -d /tmp/fc-wheel-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/dist"
"$UV" build -q --wheel --out-dir "$WORK/dist" .
wheel=$(ls "$WORK"/dist/*.whl)
"$UV" venv -q --python 3.11 "$WORK/venv"
"$UV" pip install -q --python "$WORK/venv/bin/python" -c tests/compat/pins-3.3.txt "$wheel"
cd "$WORK"  # outside the checkout: only the installed wheel is importable
PATH=$WORK/venv/bin:$PATH "$WORK/venv/bin/python" "$ROOT/tests/wheel/smoke.py" --root "$ROOT" --work "$WORK"
