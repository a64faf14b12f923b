#!/usr/bin/env bash
# Installs libtorch 2.13.0 (the version tch 0.26 requires) from PyPI's torch wheel into a
# per-user cache (with the pinned Python packages the cross-checks use) and
# links it as `.libtorch` in the repository. Idempotent: does nothing
# when the cache already holds it. See README "Set-up" for why the wheel and why a cache.
set -euo pipefail

TORCH_VERSION=2.13.0
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TCH_PATCH_LIBTORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tch-patch/libtorch-$TORCH_VERSION}"
marker="$cache/torch/lib/libtorch_cpu.so"

if [[ ! -f "$marker" ]]; then
    echo "install-libtorch: installing torch==$TORCH_VERSION into $cache (about 80 s, 4.7 GiB)"
    mkdir -p "$(dirname "$cache")"
    staging="$cache.partial.$$"
    rm -rf "$staging"
    # numpy only silences torch's warning in the Python benchmark script.
    python3 -m pip install --quiet --disable-pip-version-check --no-input \
        --target "$staging" "torch==$TORCH_VERSION" numpy
    rm -rf "$cache"
    mv "$staging" "$cache"
fi

# The Python packages of the cross-checks (tests/python/: safetensors, peft, transformers
# and what they import), pinned in scripts/python-requirements.txt and installed with
# --no-deps next to torch, so the same torch is the only torch. The marker holds the
# requirements the cache was filled from: a cache made from another list is brought up to
# date. Staged aside and moved in, the marker written last, so an interrupted install is
# redone next time.
requirements="$repo/scripts/python-requirements.txt"
extras_marker="$cache/.tch-patch-python-requirements"
if ! cmp -s "$requirements" "$extras_marker"; then
    echo "install-libtorch: installing the packages of $requirements into $cache"
    staging="$cache.extras.partial.$$"
    rm -rf "$staging"
    python3 -m pip install --quiet --disable-pip-version-check --no-input \
        --target "$staging" --no-deps -r "$requirements"
    for item in "$staging"/*; do
        name="$(basename "$item")"
        [[ "$name" == bin ]] && continue
        rm -rf "${cache:?}/$name"
        mv "$item" "$cache/"
    done
    rm -rf "$staging"
    cp "$requirements" "$extras_marker"
fi

link="$repo/.libtorch"
if [[ -L "$link" && "$(readlink "$link")" == "$cache" ]]; then
    exit 0
fi
if [[ -e "$link" && ! -L "$link" ]]; then
    echo "install-libtorch: $link exists and is not a symlink; leaving it as it is" >&2
    exit 0
fi
ln -sfn "$cache" "$link"
echo "install-libtorch: $link -> $cache"
