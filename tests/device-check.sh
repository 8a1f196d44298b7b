#!/usr/bin/env bash
# The one prepared check for a machine with a real GPU (the `device` tool of this workplace).
#
#   bash tests/device-check.sh prepare   here: build the release binaries, strip them, and put
#                                        them with the MNIST files and the Vulkan loader in
#                                        .device/ (ignored by git; about 55 MiB of the 64 that travel)
#   bash tests/device-check.sh run       there: print the adapter, run the bench (the adapter's
#                                        measured FMA and copy peak, every kernel's share of it with
#                                        --each) and `bench --vs-pytorch` (PyTorch with CUDA on the
#                                        same card, the tutorial's recipe included), and train resnet,
#                                        inception and fast_cnn (its one-epoch recipe) for one epoch
#                                        with the binaries; the log goes to
#                                        $OUT/device-check.log (or /tmp/device-check.log)
#
# The device machine has no network: everything it needs travels in .device/. Call it with
#   run(command="bash tests/device-check.sh run", carry=[".device"], timeout_s=540)
# One run should take well under its 8 minutes; README's "Performance" records its figures.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=.device

prepare() {
    set -e
    cargo build --release -p models --bins
    rm -rf "$bundle" && mkdir -p "$bundle/bin" "$bundle/mnist" "$bundle/gl"
    for b in bench simple_cnn resnet inception fast_cnn; do
        strip -o "$bundle/bin/$b" "target/release/$b"
    done
    cp ../shared/mnist/*.gz "$bundle/mnist/"
    # The Vulkan loader, for a machine whose image has only the NVIDIA driver.
    local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    mkdir -p /tmp/amd64/partial
    apt-get $o update -qq
    (cd "$bundle/gl" && apt-get $o download libvulkan1)
    mkdir -p .git/info
    grep -qsx "/$bundle/" .git/info/exclude || echo "/$bundle/" >>.git/info/exclude
    du -sh "$bundle"
}

run() {
    for f in "$bundle"/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
    export MNIST_DIR="$PWD/$bundle/mnist" PYTHONUNBUFFERED=1
    local log="${OUT:-/tmp}/device-check.log"
    {
        date -u
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
        echo "== bench --each (prints the adapter wgpu chose and its peak)"
        "$bundle/bin/bench" --each
        echo "== bench --vs-pytorch"
        "$bundle/bin/bench" --vs-pytorch --python python3
        for net in resnet inception fast_cnn; do
            echo "== $net --epochs 1"
            local start
            start=$(date +%s.%N)
            "$bundle/bin/$net" --epochs 1
            awk -v s="$start" -v e="$(date +%s.%N)" -v n="$net" 'BEGIN { printf "%s --epochs 1: %.1f s start to exit\n", n, e - s }'
        done
    } 2>&1 | tee "$log"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: bash tests/device-check.sh prepare|run" >&2
    exit 2
    ;;
esac
