#!/usr/bin/env python3
"""Drive the built page (web/dist) in headless Chromium's WebGPU on SwiftShader, as a user would.

Usage: test_page.py --dist web/dist --mnist DIR --weights FILE --out DIR [--network simple_cnn]
                    [--limit-train 2000] [--limit-test 10000] [--min-accuracy 45] [--timeout S]
       test_page.py --train-only --dist web/dist --mnist DIR --out DIR --network resnet ...
                    (step 1 alone: how README's figures for resnet and inception were taken)

0. Bad input ends in `error` with the cause in `#status`: a negative learning rate, an unknown
   optimizer or schedule, a momentum for Adam, a data URL with no files, and a training-images
   file cut short (served from /damaged/); the form shows fast_cnn's own recipe when fast_cnn is
   chosen.
1. Serves --dist at / and the MNIST directory at /data/ on 127.0.0.1, opens the page with
   `?network=…&epochs=1&limit-train=…&limit-test=…&autostart=1` and waits for
   `document.body.dataset.state` to become `done` (or `error`); `#status` must then hold
   `Accuracy on test set: X%  (epoch 1/1: …)` with X at least --min-accuracy.
2. Saves the page's trained weights (what its download button offers) to OUT/page.safetensors
   and checks they are a safetensors file of the network's state_dict names.
3. Loads --weights (a model.safetensors the native binary wrote) through the page's file input,
   paints the first 20 test images into the drawing pad, and requires at least 18 of them
   recognised.
4. Saves a screenshot to OUT/page.png.
Fails on any JavaScript exception or console error or warning (WebGPU reports validation
errors there), and on timeout. Exit status 1 on failure.

The DevTools helpers are those of tests/webgpu/compile_shaders.py.
"""

import argparse
import base64
import functools
import gzip
import http.server
import json
import os
import re
import signal
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "webgpu"))
import compile_shaders as cdp  # noqa: E402  (also checks that websocket-client is installed)
import websocket  # noqa: E402

DRAWN = 20
DRAWN_RIGHT = 18
STATE_NAMES = {"simple_cnn": ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]}


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the page's folder, with /data/ mapped to the MNIST folder and /damaged/ to a copy
    of it whose training images are cut short."""
    extensions_map = {".wasm": "application/wasm", ".js": "text/javascript", ".html": "text/html",
                      ".gz": "application/gzip", "": "application/octet-stream"}

    def __init__(self, *args, dist, mnist, damaged, **kwargs):
        self.folders = {"/data/": mnist, "/damaged/": damaged}
        super().__init__(*args, directory=dist, **kwargs)

    def translate_path(self, path):
        for prefix, folder in self.folders.items():
            if path.startswith(prefix):
                return os.path.join(folder, os.path.basename(path.split("?", 1)[0]))
        return super().translate_path(path)

    def log_message(self, *args):
        pass


class Page(cdp.DevTools):
    """A DevTools connection that keeps the console messages and exceptions it sees."""

    def __init__(self, connection):
        # Takes over the connection compile_shaders.open_page made once the page had loaded.
        self.__dict__.update(connection.__dict__)
        self.problems = []

    def note(self, msg):
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.problems.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.problems.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            e = params["entry"]
            # The page has no icon; that 404 is not the engine's.
            if "favicon.ico" not in (e.get("url") or ""):
                self.problems.append(f"{e.get('source')} {e['level']}: {e.get('text')}")

    def goto(self, url):
        """Opens `url` and waits until it is the page's document (not the one before it)."""
        self.call("Page.navigate", {"url": url})
        end = time.monotonic() + 60
        while self.evaluate("[location.href, document.readyState]") != [url, "complete"]:
            if time.monotonic() > end:
                raise cdp.Timeout()
            time.sleep(0.2)

    def wait_state(self, timeout):
        """Polls the page's state until it is no longer `training`/`idle`; returns it and #status."""
        end = time.monotonic() + timeout
        last = None
        while True:
            state, status = self.evaluate("[document.body.dataset.state, document.getElementById('status').textContent]")
            if status != last:
                print(f"  [{state}] {status}")
                last = status
            if state in ("done", "error"):
                return state, status
            if time.monotonic() > end:
                raise cdp.Timeout()
            time.sleep(1)


def first_test_images(mnist, count):
    with gzip.open(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")) as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        pixels = f.read(count * rows * cols)
    with gzip.open(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        labels = list(f.read(count))
    return [list(pixels[i * 784:(i + 1) * 784]) for i in range(count)], labels


def safetensors_names(data):
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    return sorted(k for k in header if k != "__metadata__"), header.get("__metadata__", {})


def damaged_copy(mnist, folder):
    """The MNIST files with the training images cut in half."""
    for name in os.listdir(mnist):
        if name.endswith(".gz"):
            with open(os.path.join(mnist, name), "rb") as f:
                data = f.read()
            if name.startswith("train-images"):
                data = data[:len(data) // 2]
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)


def refuses_bad_input(page, base):
    for query, words in [
        ("lr=-1", ["lr: must be a finite number above 0, got -1"]),
        ("lr=0", ["lr: must be a finite number above 0, got 0"]),
        ("optimizer=rmsprop", ["optimizer: `rmsprop` is not one of sgd, adam, adamw"]),
        ("optimizer=adam&momentum=0.9", ["momentum does not apply to --optimizer adam"]),
        ("schedule=linear", ["schedule: unknown schedule `linear`"]),
        ("label-smoothing=2", ["label-smoothing: must be from 0 to 1"]),
        ("data=nowhere", ["nowhere/train-images-idx3-ubyte.gz: 404", "pick them"]),
        ("data=damaged", ["damaged/train-images-idx3-ubyte.gz", "cut short"]),
    ]:
        page.goto(f"{base}?{query}&autostart=1")
        state, status = page.wait_state(120)
        if state != "error" or not all(w in status for w in words):
            raise cdp.Failure(f"?{query}: expected the error state with {words} in #status, got [{state}] {status}")
    # The 404s were asked for.
    page.problems = [p for p in page.problems if "404" not in p]


def offers_each_networks_recipe(page, base):
    """fast_cnn's form holds its own recipe, as its binary's defaults; choosing another network
    brings back the tutorial's."""
    fields = "['epochs', 'batch-size', 'optimizer', 'lr', 'momentum', 'schedule', 'label-smoothing']"
    read = f"{fields}.map((n) => document.getElementById('settings').elements[n].value).join(' ')"
    page.goto(f"{base}?network=fast_cnn")
    end = time.monotonic() + 60
    while page.evaluate("document.getElementById('settings').elements.optimizer.value") != "adamw":
        if time.monotonic() > end:
            raise cdp.Failure("fast_cnn's form never showed its own recipe: " + page.evaluate(read))
        time.sleep(0.2)
    for network, want in [("fast_cnn", "1 64 adamw 0.005  onecycle 0.1"), ("resnet", "10 64 sgd   constant 0")]:
        page.evaluate(f"(() => {{ const s = document.getElementById('settings').elements.network; "
                      f"s.value = '{network}'; s.dispatchEvent(new Event('change')); }})()")
        got = page.evaluate(read)
        if got != want:
            raise cdp.Failure(f"the form's recipe for {network} is '{got}', expected '{want}'")
    print("the form offers each network's recipe (fast_cnn: AdamW, OneCycleLR)")


def train_in_page(page, args):
    state, status = page.wait_state(args.timeout)
    if state != "done":
        raise cdp.Failure(f"the run ended in state {state}: {status}")
    m = re.match(r"Accuracy on test set: ([0-9.]+)%  \(epoch 1/1: ", status)
    if not m:
        raise cdp.Failure(f"#status does not hold the accuracy line: {status!r}")
    log = page.evaluate("document.getElementById('log').textContent")
    compiled = re.search(r"(\d+) kernels compiled by the browser's WGSL compiler", log)
    if not compiled:
        raise cdp.Failure(f"the page did not build every pipeline at start-up:\n{log}")
    print(f"pipelines built at start-up: {compiled.group(1)}")
    accuracy = float(m.group(1))
    print(f"accuracy in the page: {accuracy}% (at least {args.min_accuracy}% required)")
    if accuracy < args.min_accuracy:
        raise cdp.Failure(f"accuracy {accuracy}% is below {args.min_accuracy}%")


def check_page_weights(page, args):
    encoded = page.evaluate("""(() => {
        const bytes = window.page.engine().weights();
        let s = ''; for (const b of bytes) s += String.fromCharCode(b); return btoa(s); })()""")
    data = base64.b64decode(encoded)
    path = os.path.join(args.out, "page.safetensors")
    with open(path, "wb") as f:
        f.write(data)
    names, metadata = safetensors_names(data)
    expected = sorted(STATE_NAMES.get(args.network, names))
    if names != expected or metadata.get("network") != args.network:
        raise cdp.Failure(f"the page's weights hold {names} (metadata {metadata}), expected {expected}")
    print(f"page's weights: {len(data)} bytes, {len(names)} tensors, metadata {metadata} -> {path}")


def draw_digits(page, args):
    doc = page.call("DOM.getDocument")
    node = page.call("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": "#weights-file"})
    page.call("DOM.setFileInputFiles", {"nodeId": node["nodeId"], "files": [os.path.abspath(args.weights)]})
    end = time.monotonic() + 60
    while "loaded" not in page.evaluate("document.getElementById('status').textContent"):
        if page.evaluate("document.body.dataset.state") == "error" or time.monotonic() > end:
            raise cdp.Failure("loading the weights: " + page.evaluate("document.getElementById('status').textContent"))
        time.sleep(0.2)
    print(page.evaluate("document.getElementById('status').textContent"))
    images, labels = first_test_images(args.mnist, DRAWN)
    predicted = [page.evaluate(f"window.page.paint({json.dumps(image)})") for image in images]
    right = sum(p == l for p, l in zip(predicted, labels))
    print(f"drawn test images: labels {labels}\n                   predicted {predicted}: {right}/{DRAWN} right")
    if right < DRAWN_RIGHT:
        raise cdp.Failure(f"only {right} of {DRAWN} drawn digits recognised (at least {DRAWN_RIGHT} required)")


def screenshot(page, args):
    page.call("Emulation.setDeviceMetricsOverride", {"width": 1000, "height": 1200, "deviceScaleFactor": 1, "mobile": False})
    shot = page.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path = os.path.join(args.out, "page.png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(f"screenshot: {path}")


def run(args, tmp, deadline):
    damaged = os.path.join(tmp, "damaged")
    os.mkdir(damaged)
    damaged_copy(args.mnist, damaged)
    handler = functools.partial(Handler, dist=os.path.abspath(args.dist), mnist=os.path.abspath(args.mnist),
                                damaged=damaged)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = page = None
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        proc = cdp.start_chromium(args.chromium, tmp, base)
        port = cdp.devtools_port(proc, tmp, deadline)
        page = Page(cdp.open_page(port, base, deadline))
        for domain in ("Runtime", "Log", "Page", "DOM"):
            page.call(f"{domain}.enable")
        query = (f"network={args.network}&epochs=1&limit-train={args.limit_train}"
                 f"&limit-test={args.limit_test}&autostart=1")
        if not args.train_only:
            refuses_bad_input(page, base)
            offers_each_networks_recipe(page, base)
        page.goto(f"{base}?{query}")
        train_in_page(page, args)
        if not args.train_only:
            check_page_weights(page, args)
            draw_digits(page, args)
        screenshot(page, args)
        if page.problems:
            raise cdp.Failure("the page reported:\n  " + "\n  ".join(page.problems))
    finally:
        if page:
            page.close()
        cdp.stop_chromium(proc)
        server.shutdown()
        server.server_close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dist", required=True)
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--weights", help="a model.safetensors of --network for the drawing check")
    ap.add_argument("--train-only", action="store_true", help="only train in the page and report")
    ap.add_argument("--out", required=True)
    ap.add_argument("--network", default="simple_cnn")
    ap.add_argument("--limit-train", type=int, default=2000)
    ap.add_argument("--limit-test", type=int, default=10000)
    ap.add_argument("--min-accuracy", type=float, default=45.0)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=900, help="limit for the whole run in seconds")
    args = ap.parse_args()
    if not (args.train_only or args.weights):
        ap.error("--weights is needed unless --train-only")
    os.makedirs(args.out, exist_ok=True)
    for key in ("no_proxy", "NO_PROXY"):
        os.environ[key] = ",".join(filter(None, [os.environ.get(key), "127.0.0.1", "localhost"]))
    signal.signal(signal.SIGTERM, cdp._interrupt)
    start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="web_test.")
    status = 0
    try:
        run(args, tmp, start + args.timeout)
        print("PASS")
    except cdp.Timeout:
        print(f"FAIL: timed out after {args.timeout:g} s")
        status = 1
    except (cdp.Failure, websocket.WebSocketException, ConnectionError, KeyboardInterrupt) as e:
        print(f"FAIL: {e}")
        tail = cdp.chromium_log_tail(tmp)
        if tail:
            print("Chromium's log (D-Bus lines left out):\n" + tail)
        status = 1
    finally:
        cdp.remove_dir(tmp)
    print(f"took {time.monotonic() - start:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
