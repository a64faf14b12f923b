#!/usr/bin/env bash
# Installs libtorch 2.13.0 (the version tch 0.26 requires) from PyPI's torch wheel into a
# per-user cache (with the Python `safetensors` package the Python cross-checks use) and
# links it as `.libtorch` in the repository. Idempotent: does nothing
# when the cache already holds it. See README "Set-up" for why the wheel and why a cache.
set -euo pipefail

TORCH_VERSION=2.13.0
SAFETENSORS_VERSION=0.8.0
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

# The Python `safetensors` package, for the Python cross-checks of the adapter files
# (tests/python/). Added to a cache that lacks it, also one made before it was listed
# here; staged aside and moved in, so an interrupted install leaves no half package.
if [[ ! -d "$cache/safetensors" ]]; then
    echo "install-libtorch: installing safetensors into $cache"
    staging="$cache.safetensors.partial.$$"
    rm -rf "$staging"
    python3 -m pip install --quiet --disable-pip-version-check --no-input \
        --target "$staging" --no-deps "safetensors==$SAFETENSORS_VERSION"
    # The package folder goes in last: it is what marks the install as done.
    for item in "$staging"/*; do
        name="$(basename "$item")"
        [[ "$name" == bin || "$name" == safetensors ]] && continue
        rm -rf "${cache:?}/$name"
        mv "$item" "$cache/"
    done
    mv "$staging/safetensors" "$cache/safetensors"
    rm -rf "$staging"
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
