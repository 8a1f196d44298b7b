#!/usr/bin/env python3
"""Compile every WGSL shader in headless Chromium's WebGPU (Tint) and create a compute
pipeline for each entry point on a device with the default limits.

Usage: compile_shaders.py --shaders FILE.json [--chromium PATH] [--timeout SECONDS]

FILE.json is a list of {"file": "matmul", "entries": ["matmul"], "subgroups": false,
"source": "<WGSL text>"}; an optional "line_offset" (default 0) is the number of lines
prepended to the file's text (e.g. an `enable subgroups;` line), subtracted from the line
numbers reported so that they point into the file, and an optional "parts", a list of
{"file": "prelude/grid", "line": L}, names files appended to it: the source's line L (counted
in the whole source, prefix included) is that file's line 1.

Prints one line per entry point (OK or FAIL with the reason; compiler errors as
file:line:column: error: message), then `N passed, M failed`, and exits 1 when anything
failed, when WebGPU or an adapter is unavailable, or on timeout (2 on bad arguments).

WebGPU needs a secure context, which about:blank in a freshly started headless Chromium is
not, so the script serves an empty page on http://127.0.0.1 (a secure origin) and drives it
through the DevTools protocol.
"""

import argparse
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

try:
    import websocket  # the websocket-client package
except ImportError:
    sys.exit("compile_shaders.py needs the websocket-client package: pip install -r "
             "tests/webgpu/requirements.txt")

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--enable-unsafe-webgpu",  # WebGPU is off by default on Linux
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",  # the CPU Vulkan driver that ships with Chromium
    "--use-webgpu-adapter=swiftshader",
    # No network: nothing to fetch, and nothing to wait for.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--remote-debugging-port=0",
]

PAGE = b"<!doctype html><meta charset=utf-8><title>compile_shaders</title>\n"

# Installed in the page as window.__wgsl; each call is one Runtime.evaluate.
HARNESS_JS = r"""
(() => {
  const h = {device: null, lost: null, uncaptured: []};
  const text = (e) => (e && e.message !== undefined) ? String(e.message) : String(e);
  h.init = async (needSubgroups) => {
    const r = {secure: isSecureContext, webgpu: !!navigator.gpu};
    if (!navigator.gpu) return r;
    r.languageFeatures = [...navigator.gpu.wgslLanguageFeatures].sort();
    let adapter;
    try {
      adapter = await navigator.gpu.requestAdapter();
    } catch (e) {
      r.adapterError = text(e);
    }
    if (!adapter) return r;
    const info = adapter.info || {};
    r.adapter = {};
    for (const k of ["vendor", "architecture", "device", "description",
                     "subgroupMinSize", "subgroupMaxSize", "isFallbackAdapter"]) {
      if (info[k] !== undefined) r.adapter[k] = info[k];
    }
    r.features = [...adapter.features].sort();
    r.hasSubgroups = adapter.features.has("subgroups");
    const requiredFeatures = (needSubgroups && r.hasSubgroups) ? ["subgroups"] : [];
    let device;
    try {
      device = await adapter.requestDevice({requiredFeatures});  // default limits
    } catch (e) {
      r.deviceError = text(e);
      return r;
    }
    h.device = device;
    device.addEventListener("uncapturederror", (ev) => h.uncaptured.push(text(ev.error)));
    device.lost.then((info) => { h.lost = `${info.reason}: ${info.message}`; });
    r.deviceFeatures = [...device.features].sort();
    r.limits = {};
    for (const k of ["maxStorageBuffersPerShaderStage", "maxUniformBuffersPerShaderStage",
                     "maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup",
                     "maxComputeWorkgroupSizeX", "maxComputeWorkgroupSizeY",
                     "maxComputeWorkgroupSizeZ", "maxBindGroups"]) {
      r.limits[k] = device.limits[k];
    }
    return r;
  };
  h.check = async (shader) => {
    const device = h.device;
    const r = {messages: [], moduleError: null, entries: [], uncaptured: [], lost: null};
    if (h.lost) { r.lost = h.lost; return r; }
    let module;
    device.pushErrorScope("validation");
    try {
      module = device.createShaderModule({code: shader.source, label: shader.file});
      const info = await module.getCompilationInfo();
      for (const m of info.messages) {
        r.messages.push({type: m.type, line: m.lineNum, column: m.linePos,
                         offset: m.offset, length: m.length, message: m.message});
      }
    } catch (e) {
      r.moduleError = text(e);
    }
    const scoped = await device.popErrorScope();
    const compileErrors = r.messages.some((m) => m.type === "error");
    if (scoped && !compileErrors && !r.moduleError) r.moduleError = text(scoped);
    if (module && !compileErrors && !r.moduleError) {
      for (const entryPoint of shader.entries) {
        const e = {name: entryPoint, error: null};
        device.pushErrorScope("validation");
        device.pushErrorScope("internal");
        try {
          await device.createComputePipelineAsync(
              {layout: "auto", compute: {module, entryPoint}, label: entryPoint});
        } catch (err) {
          // GPUPipelineError: reason "validation" or "internal".
          e.error = (err && err.reason ? err.reason + " error: " : "") + text(err);
        }
        for (const s of [await device.popErrorScope(), await device.popErrorScope()]) {
          if (s && !e.error) e.error = text(s);
        }
        r.entries.push(e);
      }
    }
    try { await device.queue.onSubmittedWorkDone(); } catch (e) {}
    r.uncaptured = h.uncaptured.splice(0);
    r.lost = h.lost;
    return r;
  };
  window.__wgsl = h;
  return true;
})()
"""


class Timeout(Exception):
    pass


class Failure(Exception):
    """WebGPU could not be set up: no page, no adapter, no device."""


def display_name(file):
    return file if file.endswith(".wgsl") else file + ".wgsl"


def load_shaders(path):
    with open(path, encoding="utf-8") as f:
        shaders = json.load(f)
    if not isinstance(shaders, list) or not shaders:
        raise ValueError("expected a non-empty JSON list of shaders")
    for i, s in enumerate(shaders):
        if not isinstance(s, dict):
            raise ValueError(f"item {i}: expected an object")
        for key, kind in (("file", str), ("source", str), ("entries", list)):
            if not isinstance(s.get(key), kind):
                raise ValueError(f"item {i}: '{key}' missing or not a {kind.__name__}")
        if not s["entries"] or not all(isinstance(e, str) for e in s["entries"]):
            raise ValueError(f"item {i} ({s['file']}): 'entries' must be a non-empty list of strings")
        s["subgroups"] = bool(s.get("subgroups", False))
        s["line_offset"] = int(s.get("line_offset", 0))
        parts = s.get("parts", [])
        if not (isinstance(parts, list) and all(
                isinstance(p, dict) and isinstance(p.get("file"), str)
                and isinstance(p.get("line"), int) for p in parts)):
            raise ValueError(f"item {i} ({s['file']}): 'parts' must be a list of "
                             '{"file": str, "line": int}')
        s["parts"] = sorted(parts, key=lambda p: p["line"])
    return shaders


def serve_page():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class DevTools:
    def __init__(self, url, deadline):
        self.deadline = deadline
        self.ws = websocket.create_connection(url, timeout=self.remaining(),
                                              suppress_origin=True)
        self.next_id = 0

    def remaining(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        return left

    def call(self, method, params=None):
        self.next_id += 1
        msg_id = self.next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        while True:
            self.ws.settimeout(self.remaining())
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                raise Timeout()
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise Failure(f"DevTools {method}: {msg['error']}")
                return msg["result"]
            self.note(msg)

    def note(self, msg):
        """An event that arrived while waiting for a reply; web/test_page.py keeps some."""

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            desc = d.get("exception", {}).get("description") or d.get("text")
            raise Failure(f"JavaScript exception: {desc}")
        return result["result"].get("value")

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def start_chromium(chromium, tmp, url):
    profile = os.path.join(tmp, "profile")
    os.mkdir(profile)
    log = open(os.path.join(tmp, "chromium.log"), "wb")
    try:
        proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except OSError as e:
        raise Failure(f"cannot start Chromium ({chromium}): {e}")
    finally:
        log.close()
    return proc


def devtools_port(proc, tmp, deadline):
    port_file = os.path.join(tmp, "profile", "DevToolsActivePort")
    while True:
        if proc.poll() is not None:
            raise Failure(f"Chromium exited with status {proc.returncode} before DevTools "
                          "started")
        try:
            with open(port_file) as f:
                port = int(f.read().split()[0])
            break
        except (OSError, ValueError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise Timeout()
        time.sleep(0.1)
    return port


def chromium_log_tail(tmp, lines=30):
    try:
        with open(os.path.join(tmp, "chromium.log"), errors="replace") as f:
            # D-Bus complaints are expected in a container with no D-Bus.
            log = [l.rstrip() for l in f if "dbus" not in l and l.strip()]
    except OSError:
        return ""
    return "\n".join("    " + l for l in log[-lines:])


def stop_chromium(proc):
    """Ends Chromium and every process it started (they share its process group)."""
    if proc is None:
        return
    def killpg(sig):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        killpg(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    killpg(signal.SIGKILL)  # whatever is left, even when the browser process itself is gone
    proc.wait()
    # Let the group die before the profile is removed under it.
    for _ in range(100):
        if not group_running(proc.pid):
            break
        time.sleep(0.05)


def group_running(pgid):
    """Whether a process of the group is still running (zombies, which write nothing, aside)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    if not os.path.isdir("/proc/self"):
        return True
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
                    state, _ppid, pgrp = f.read().rsplit(")", 1)[1].split()[:3]
            except (OSError, IndexError, ValueError):
                continue
            if int(pgrp) == pgid and state not in "ZX":
                return True
    return False


def remove_dir(path):
    for _ in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            return
        time.sleep(0.2)
    print(f"warning: could not remove {path}")


# DevTools is on this machine: never through an http_proxy from the environment (urllib;
# websocket-client reads no_proxy, set in main).
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def open_page(port, url, deadline):
    """Connects to the page target once it shows our secure origin."""
    origin = url.rsplit("/", 1)[0]  # http://127.0.0.1:PORT
    while True:
        try:
            with NO_PROXY.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
                targets = json.load(resp)
            pages = [t for t in targets if t.get("type") == "page"]
            page = next((t for t in pages if t.get("url", "").startswith(origin)), None)
            if page:
                dt = DevTools(page["webSocketDebuggerUrl"], deadline)
                ready = False
                try:
                    # The target's url may be a navigation not yet committed: ask the page.
                    ready = dt.evaluate("[location.href, document.readyState]") == [url,
                                                                                   "complete"]
                finally:
                    if not ready:
                        dt.close()
                if ready:
                    return dt
        except (OSError, ValueError, Failure, websocket.WebSocketException):
            pass
        if time.monotonic() > deadline:
            raise Timeout()
        time.sleep(0.2)


def report_setup(info):
    if not info.get("secure"):
        raise Failure("the page is not a secure context, so it has no WebGPU")
    if not info.get("webgpu"):
        raise Failure("navigator.gpu is missing: WebGPU is unavailable in this Chromium "
                      "(needs --enable-unsafe-webgpu and a working Vulkan)")
    print("wgslLanguageFeatures: " + " ".join(info.get("languageFeatures", [])))
    if "adapter" not in info:
        raise Failure("navigator.gpu.requestAdapter() gave no adapter"
                      + (f": {info['adapterError']}" if info.get("adapterError") else "")
                      + " (is SwiftShader Vulkan working? see Chromium's log below)")
    a = info["adapter"]
    desc = " ".join(str(a[k]) for k in ("vendor", "architecture", "device", "description")
                    if a.get(k))
    if a.get("isFallbackAdapter"):
        desc += " (fallback adapter)"
    if "subgroupMinSize" in a:
        desc += f", subgroup sizes {a['subgroupMinSize']}..{a['subgroupMaxSize']}"
    print(f"adapter: {desc}")
    print("adapter features: " + " ".join(info.get("features", [])))
    if info.get("deviceError"):
        raise Failure(f"requestDevice failed: {info['deviceError']}")
    limits = " ".join(f"{k}={v}" for k, v in info.get("limits", {}).items())
    print(f"device (default limits): {limits}")
    print("device features: " + (" ".join(info.get("deviceFeatures", [])) or "(none)"))


def print_message(shader, m):
    name = display_name(shader["file"])
    line = m.get("line") or 0
    col = m.get("column") or 0
    src_lines = shader["source"].split("\n")
    file_line = line - shader["line_offset"]
    for part in shader["parts"]:
        if part["line"] <= line:
            name, file_line = display_name(part["file"]), line - part["line"] + 1
    where = f"{name}:{file_line}:{col}" if file_line > 0 else f"{name}:(prefix line {line}):{col}"
    print(f"{where}: {m['type']}: {m['message']}")
    if 0 < line <= len(src_lines):
        text = src_lines[line - 1].replace("\t", " ")
        print("    " + text)
        if col > 0:
            length = max(1, min(m.get("length") or 1, len(text) - col + 1))
            print("    " + " " * (col - 1) + "^" * length)


def indent(text):
    return "\n".join("    " + l for l in str(text).splitlines())


def check_shader(dt, shader, has_subgroups):
    """Prints the shader's results; returns (passed, failed) counted in entry points."""
    name = display_name(shader["file"])
    units = [f"{name} {e}" for e in shader["entries"]]
    if shader["subgroups"] and not has_subgroups:
        for u in units:
            print(f"FAIL {u}: needs the 'subgroups' feature, which the adapter lacks "
                  "(not checked)")
        return 0, len(units)
    r = dt.evaluate(f"window.__wgsl.check({json.dumps(shader)})")
    if r.get("lost") and not r["messages"] and not r["entries"]:
        for u in units:
            print(f"FAIL {u}: device lost: {r['lost']}")
        return 0, len(units)
    for m in r["messages"]:
        print_message(shader, m)
    errors = [m for m in r["messages"] if m["type"] == "error"]
    extra = [f"uncaptured error: {u}" for u in r["uncaptured"]]
    if r.get("lost"):
        extra.append(f"device lost: {r['lost']}")
    passed = failed = 0
    if errors or r["moduleError"]:
        why = (f"{len(errors)} compile error(s)" if errors
               else f"createShaderModule failed: {r['moduleError']}")
        for u in units:
            print(f"FAIL {u}: {why}")
            failed += 1
    else:
        for e in r["entries"]:
            problem = f"pipeline creation failed:\n{indent(e['error'])}" if e["error"] else "; ".join(extra)
            if problem:
                print(f"FAIL {name} {e['name']}: {problem}")
                failed += 1
            else:
                print(f"OK   {name} {e['name']}")
                passed += 1
    if extra and (errors or r["moduleError"]):
        print(indent("\n".join(extra)))
    return passed, failed


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shaders", required=True, metavar="FILE.json")
    ap.add_argument("--chromium", default="/usr/bin/chromium", metavar="PATH")
    ap.add_argument("--timeout", type=float, default=120, metavar="SECONDS",
                    help="limit for the whole run (default 120)")
    args = ap.parse_args()
    try:
        shaders = load_shaders(args.shaders)
    except (OSError, ValueError, TypeError) as e:
        print(f"error: {args.shaders}: {e}", file=sys.stderr)
        return 2
    total = sum(max(1, len(s["entries"])) for s in shaders)

    start = time.monotonic()
    for key in ("no_proxy", "NO_PROXY"):
        os.environ[key] = ",".join(filter(None, [os.environ.get(key), "127.0.0.1", "localhost"]))
    deadline = start + args.timeout
    # SIGTERM (e.g. from `timeout`) must still clean up.
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = tempfile.mkdtemp(prefix="compile_shaders.")
    server = proc = dt = None
    passed = failed = 0
    status = 0
    try:
        server = serve_page()
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        proc = start_chromium(args.chromium, tmp, url)
        port = devtools_port(proc, tmp, deadline)
        dt = open_page(port, url, deadline)
        dt.evaluate(HARNESS_JS)
        need_subgroups = any(s["subgroups"] for s in shaders)
        info = dt.evaluate(f"window.__wgsl.init({json.dumps(need_subgroups)})")
        report_setup(info)
        for shader in shaders:
            p, f = check_shader(dt, shader, info.get("hasSubgroups", False))
            passed += p
            failed += f
            sys.stdout.flush()
    except Timeout:
        print(f"FAIL: timed out after {args.timeout:g} s")
        status = 1
    except Failure as e:
        print(f"FAIL: {e}")
        tail = chromium_log_tail(tmp)
        if tail:
            print("Chromium's log (D-Bus lines left out):\n" + tail)
        status = 1
    except KeyboardInterrupt as e:
        print(f"FAIL: interrupted {e}")
        status = 1
    except (websocket.WebSocketException, ConnectionError) as e:
        print(f"FAIL: lost the DevTools connection to Chromium ({type(e).__name__}: {e})")
        tail = chromium_log_tail(tmp)
        if tail:
            print("Chromium's log (D-Bus lines left out):\n" + tail)
        status = 1
    finally:
        if dt:
            dt.close()
        stop_chromium(proc)
        if server:
            server.shutdown()
            server.server_close()
        remove_dir(tmp)
    # Whatever was not checked counts as failed.
    failed += total - passed - failed
    print(f"took {time.monotonic() - start:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if (failed or status) else 0


if __name__ == "__main__":
    sys.exit(main())
