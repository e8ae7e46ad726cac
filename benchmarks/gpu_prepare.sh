#!/bin/bash
# Gather here what benchmarks/gpu_session.sh needs on a lent GPU machine, which reaches no package registry: wheels for
# its Python 3.12 of the packages its image lacks (papermill, jupytext, nbval, ipykernel, logomaker, captum and their
# dependencies) and the offline mirror, into build/gpu/ (ignored by git; the device tool carries it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WHEELS=build/gpu/wheels
mkdir -p "$WHEELS" build/gpu/mirror
TARGET=(--python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64
        --platform manylinux_2_17_x86_64 --only-binary=:all:)
$PY -m pip download -q --dest "$WHEELS" "${TARGET[@]}" papermill jupytext nbval ipykernel logomaker
$PY -m pip download -q --dest "$WHEELS" "${TARGET[@]}" --no-deps captum   # its torch is the image's
# the image holds these already (its 2026-11 package list); what travels is capped at 64 MiB
for present in attrs certifi charset_normalizer click contourpy coverage cycler fonttools idna iniconfig kiwisolver \
    markdown_it_py matplotlib mdurl numpy packaging pandas pillow pluggy psutil pygments pyparsing pytest \
    python_dateutil pyyaml requests tqdm typing_extensions urllib3; do
  rm -f "$WHEELS/$present"-[0-9]*.whl
done
cp "${KN_MIRROR:-../shared/mirror}"/* build/gpu/mirror/
du -sh build/gpu
