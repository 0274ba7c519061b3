#!/usr/bin/env python3
"""Open a ``rawbpf report --html`` page in Debian's headless chromium and check it like a person would.

Drives chromium over the DevTools protocol on a private pipe (``--remote-debugging-pipe``: commands on fd 3,
answers on fd 4, NUL-terminated JSON), standard library only. It loads the page from a file, waits until the
page says it is drawn, and reports: how long that took, every console error, uncaught exception and
log error (a Content-Security-Policy violation included), every network request other than the page itself,
and whether opening a tool call and a process node in the tree shows their children. ``--screenshot`` saves a
PNG after opening the first calls (the README's picture)::

    python3 tools/report_browser.py report.html --screenshot docs/report.png

Prints the result as JSON; exit status 1 when the page has errors, fetched anything, or did not expand.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--mute-audio", "--hide-scrollbars"]

EXPAND_JS = r"""
(function(){
  function visible(){return document.querySelectorAll('#calls .node').length;}
  var before=visible();
  var heads=[].slice.call(document.querySelectorAll('#calls .call')).filter(function(c){
    return c.querySelector('.chead .tag:last-child').textContent.indexOf('process tree')>=0;});
  if(!heads.length)return {calls:0};
  var call=heads[0];call.querySelector('.chead').click();
  var opened=visible();
  var tw=call.querySelector('.tw:not([disabled])');var kidsBefore=0,kidsAfter=0,expanded=null;
  if(tw){var kids=tw.closest('.node').querySelector('.kids');kidsBefore=kids.hidden?0:kids.children.length;
    tw.click();kidsAfter=kids.hidden?0:kids.children.length;expanded=tw.getAttribute('aria-expanded');}
  return {calls:heads.length,before:before,opened:opened,kidsBefore:kidsBefore,kidsAfter:kidsAfter,
          expanded:expanded,processCalls:heads.length};
})()
"""


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _pipe_fds(cmd_r: int, res_w: int) -> None:
    """In the child: the command pipe on fd 3 and the answer pipe on fd 4, as chromium expects."""
    a, b = os.dup(cmd_r), os.dup(res_w)  # out of the way of 3 and 4 first
    os.dup2(a, 3)
    os.dup2(b, 4)


class Browser:
    """A headless chromium driven over a DevTools pipe; a context manager that ends the browser it started."""

    def __init__(self, binary: Optional[str] = None, *, width: int = 1360, height: int = 900) -> None:
        binary = binary or find_chromium()
        if binary is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="rawbpf-chromium-")
        cmd_r, self._cmd_w = os.pipe()  # we write commands; chromium reads fd 3
        self._res_r, res_w = os.pipe()  # chromium writes fd 4; we read
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(3, 4), preexec_fn=lambda: _pipe_fds(cmd_r, res_w))
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: List[Dict[str, Any]] = []
        self.session = ""
        self.width, self.height = width, height

    # -- protocol

    def _read(self, timeout: float) -> Dict[str, Any]:
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        data: Dict[str, Any] = json.loads(msg)
        return data

    def call(self, method: str, params: Optional[Dict[str, Any]] = None, *, session: bool = True,
             timeout: float = 30.0) -> Dict[str, Any]:
        self._id += 1
        msg: Dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            data = self._read(timeout)
            if data.get("id") == self._id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                result: Dict[str, Any] = data.get("result", {})
                return result
            self.events.append(data)

    def pump(self, seconds: float) -> None:
        """Collect events for a while."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.events.append(self._read(end - time.monotonic()))
            except TimeoutError:
                return

    def open_page(self) -> None:
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        target = page["targetId"] if page else self.call("Target.createTarget", {"url": "about:blank"},
                                                         session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network", "Performance"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expr: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"evaluate: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    # -- checks

    def problems(self, page_url: str) -> Dict[str, List[str]]:
        errors, requests = [], []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                     for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + str(p["entry"].get("text")))
            elif m == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if url != page_url and not url.startswith(("data:", "about:")):
                    requests.append(url)
        return {"errors": errors, "requests": requests}

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", session=False, timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_page(path: str, *, screenshot: Optional[str] = None, binary: Optional[str] = None,
               timeout: float = 30.0) -> Dict[str, Any]:
    """Load ``path``, wait until drawn, expand a call and a node, optionally save a screenshot."""
    url = Path(path).resolve().as_uri()
    with Browser(binary) as b:
        b.open_page()
        t0 = time.monotonic()
        b.call("Page.navigate", {"url": url})
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if b.evaluate("document.body && document.body.dataset.rendered") == "1":
                break
            time.sleep(0.005)
        else:
            raise TimeoutError(f"{path}: the page did not finish drawing in {timeout} s")
        open_s = time.monotonic() - t0
        nav = b.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0]||{})")
        # the page's main-thread time (parse, script, layout): what the page costs, apart from how busy the
        # machine is
        metrics = {m["name"]: m["value"] for m in b.call("Performance.getMetrics")["metrics"]}
        marks = b.evaluate("JSON.stringify(performance.getEntriesByType('mark').map(function(m){"
                           "return [m.name, m.startTime];}))")
        expand = b.evaluate(EXPAND_JS)
        b.pump(0.3)
        out: Dict[str, Any] = {"page": path, "bytes": os.path.getsize(path), "open_s": round(open_s, 3),
                               "load_event_ms": round(json.loads(nav).get("loadEventEnd", 0), 1),
                               "main_thread_s": round(metrics.get("TaskDuration", 0.0), 3),
                               "script_s": round(metrics.get("ScriptDuration", 0.0), 3),
                               "layout_s": round(metrics.get("LayoutDuration", 0.0), 3),
                               "marks_ms": {k: round(v, 1) for k, v in json.loads(marks or "[]")},
                               "expand": expand, **b.problems(url)}
        if screenshot:
            b.evaluate("document.querySelectorAll('#calls .call').forEach(function(c,i){if(i<4){"
                       "var b=c.querySelector('.cbody');if(b.hidden)c.querySelector('.chead').click();"
                       "var t=c.querySelector('.tw[aria-expanded=\"false\"]:not([disabled])');"
                       "if(t)t.click();}})")
            height = int(b.evaluate("Math.min(document.documentElement.scrollHeight, 1750)") or b.height)
            b.call("Emulation.setDeviceMetricsOverride",
                   {"width": b.width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            shot = b.call("Page.captureScreenshot", {"format": "png"})
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            out["screenshot"] = screenshot
        return out


def page_ok(result: Dict[str, Any]) -> bool:
    e = result.get("expand") or {}
    return not result["errors"] and not result["requests"] and (
        not e.get("calls") or (e["opened"] > e["before"] and (e["expanded"] in (None, "true"))
                               and e["kidsAfter"] >= e["kidsBefore"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("page")
    ap.add_argument("--screenshot", metavar="PNG")
    ap.add_argument("--chromium", help="browser binary (default: chromium on PATH)")
    args = ap.parse_args()
    res = check_page(args.page, screenshot=args.screenshot, binary=args.chromium)
    print(json.dumps(res, indent=1))
    return 0 if page_ok(res) else 1


if __name__ == "__main__":
    sys.exit(main())
