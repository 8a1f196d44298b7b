#!/usr/bin/env bash
# Builds the web page into web/dist/: index.html, app.js, wasm-bindgen's JS glue (web.js) and the
# WebAssembly (web_bg.wasm). No bundler, no npm; relative URLs only, so dist/ can be served from
# anywhere by any static server:  python3 -m http.server -d web/dist 8000
# Installs what it needs when missing: the wasm32 target and wasm-bindgen-cli of the same version
# as the wasm-bindgen crate in Cargo.lock (the two must match exactly).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$version" ]; then
    echo "error: no wasm-bindgen in Cargo.lock; run \`cargo generate-lockfile\` first" >&2
    exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
    echo "installing wasm-bindgen-cli $version (a few minutes, once)"
    # --locked first (the versions its authors tested); a registry mirror that lacks one of
    # them still gets a build with the newest compatible versions.
    cargo install -q --locked wasm-bindgen-cli --version "$version" ||
        cargo install -q wasm-bindgen-cli --version "$version"
fi

cargo build -q -p web --target wasm32-unknown-unknown --release
rm -rf web/dist
wasm-bindgen --target web --no-typescript --out-dir web/dist --out-name web \
    target/wasm32-unknown-unknown/release/web.wasm
cp web/static/index.html web/static/app.js web/dist/
echo "built web/dist ($(du -sh web/dist | cut -f1)); serve it with: python3 -m http.server -d web/dist 8000"
