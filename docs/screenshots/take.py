"""Take the screenshots of the Prefect UI in this folder again, end to end (issue 13).

Why this script exists: the done criterion of issue 13 is what an operations team sees in the
Prefect UI after a few daily cycles (logs, whole tables, the trend), and that can only be judged
from the rendered pages. Screenshots taken by hand go stale with every change to the report, so
this script makes them from nothing: it starts a Prefect server with its UI in a temporary
directory, runs `arrears demo` against it for a few simulated days (1,000 accounts, a fixed seed
and a fixed first day, so the figures are the same every time), takes the pictures with headless
Chromium, and stops everything it started.

Why it drives Chromium through the DevTools protocol instead of `chromium --screenshot`: the
Prefect UI is a single-page app that fetches its data after the page has loaded, so a screenshot
taken at a fixed time may show a spinner. Here each page is shot only once the text it must show
is on it, and once two screenshots a second apart are identical (the run graph has stopped
moving); pages whose table scrolls sideways, or whose log panel scrolls, are widened or lengthened
until nothing scrolls, so every column and every log line is in the picture. The protocol is spoken
with `websockets`, which Prefect already installs: no new dependency.

Run it with the project's virtual environment, from anywhere (as root, Debian's `chromium`
installed: `apt-get install -y chromium`):

    .venv/bin/python docs/screenshots/take.py            # writes the PNGs beside this file
    .venv/bin/python docs/screenshots/take.py --out /tmp/shots --days 4
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FIRST_DAY = "2026-12-01T09:00:00+08:00"
WIDTH, HEIGHT = 1440, 900
MAX_SIDE = 4000  # a page is never widened or lengthened past this many pixels
MAX_PNG_BYTES = 500_000


@dataclass(frozen=True)
class Shot:
    """One picture: the page, the text that says it has rendered, and how to frame it."""

    name: str
    path: str  # a path of the UI, e.g. /v2/runs
    ready: list[str]  # every one of these strings is in the page's text before it is shot
    width: int = WIDTH
    height: int = HEIGHT
    grow_x: bool = False  # widen until no element scrolls sideways (whole tables)
    grow_y: bool = False  # lengthen until nothing scrolls down (every log line, every card)


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `command` in a session of its own, so that it and its children stop together."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group that `start` made (SIGTERM, then SIGKILL after 15 s)."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(what: str, ok: Any, timeout: float, process: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"{what} exited with {process.returncode}; see {log}:\n{log.read_text()[-2000:]}"
            )
        try:
            value = ok()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"{what} not ready after {timeout:.0f} s; see {log}")


def get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@contextmanager
def prefect_server(work: Path, prefect: Path) -> Iterator[str]:
    """A Prefect server with its UI on a free port, its database in `work`; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect-server"),
        "PREFECT_UI_ENABLED": "true",
        # Without it the UI asks for the API on the default port 4200, not on ours.
        "PREFECT_UI_API_URL": f"{base}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = work / "prefect-server.log"
    server = start([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)], log, env)
    try:
        wait_for("prefect server", lambda: get_json(f"{base}/api/health"), 180, server, log)
        yield base
    finally:
        stop(server)


def run_demo(work: Path, python: Path, api: str, accounts: int, days: int, first_day: str) -> None:
    """`arrears demo` on a fresh SQLite database in `work`, its runs and artifacts on our server."""
    home = work / "arrears-home"
    database = f"sqlite:///{home / 'demo.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ARREARS_HOME": str(home),
        "ARREARS_DATABASE_URL": database,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(work / "prefect-client"),
    }
    command = [str(python), "-m", "deployments.cli", "demo"]
    command += [
        "--accounts",
        str(accounts),
        "--days",
        str(days),
        "--as-of",
        first_day,
        "--database",
        database,
    ]
    log = work / "demo.log"
    with log.open("wb") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, check=False)
    if done.returncode != 0:
        raise SystemExit(f"arrears demo exited with {done.returncode}:\n{log.read_text()[-3000:]}")


@contextmanager
def chromium(work: Path, binary: str) -> Iterator[str]:
    """Headless Chromium with a fresh profile; yields the DevTools WebSocket URL of its page."""
    profile = work / "chromium-profile"
    log = work / "chromium.log"
    flags = [
        "--headless",
        "--no-sandbox",  # we are root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        # Without these three it tries to reach the network, and its connections are refused.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--window-size={WIDTH},{HEIGHT}",
        "about:blank",
    ]
    browser = start([binary, *flags], log, dict(os.environ))
    try:
        active = profile / "DevToolsActivePort"
        port = wait_for(
            "chromium", lambda: active.exists() and active.read_text().split("\n")[0], 60, browser, log
        )
        targets = wait_for(
            "chromium's page",
            lambda: [t for t in get_json(f"http://127.0.0.1:{port}/json/list") if t["type"] == "page"],
            30,
            browser,
            log,
        )
        yield str(targets[0]["webSocketDebuggerUrl"])
    finally:
        stop(browser)


# --- the DevTools protocol --------------------------------------------------------------------------


class Page:
    """The few DevTools protocol commands we need, over one WebSocket."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.last_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.socket.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:  # events arrive in between; we ask for none, so skip whatever comes
            message = json.loads(await self.socket.recv())
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def size(self, width: int, height: int) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    async def png(self) -> bytes:
        return base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])


# How far the page's content overflows its scroll boxes, sideways and down (inside <main>: the
# navigation column never scrolls), and the whole document's own overflow.
OVERFLOW_JS = """(() => {
  let x = 0, y = 0;
  for (const e of document.querySelectorAll('main *')) {
    const s = getComputedStyle(e);
    if (['auto', 'scroll'].includes(s.overflowX)) x = Math.max(x, e.scrollWidth - e.clientWidth);
    if (['auto', 'scroll'].includes(s.overflowY)) y = Math.max(y, e.scrollHeight - e.clientHeight);
  }
  const d = document.documentElement;
  return [Math.max(x, d.scrollWidth - innerWidth), Math.max(y, d.scrollHeight - innerHeight)];
})()"""


async def take(page: Page, base: str, shot: Shot, out: Path, timeout: float = 90.0) -> None:
    width, height = shot.width, shot.height
    await page.size(width, height)
    await page.call("Page.navigate", url=base + shot.path)
    deadline = time.monotonic() + timeout
    ready = json.dumps(shot.ready)
    while not await page.evaluate(
        f"{ready}.every(t => document.body && document.body.innerText.includes(t))"
    ):
        if await page.evaluate("document.body && document.body.innerText.includes('Something went wrong')"):
            raise SystemExit(f"{shot.name}: the UI says 'Something went wrong' at {base + shot.path}")
        if time.monotonic() > deadline:
            text = await page.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
            raise SystemExit(
                f"{shot.name}: {shot.ready} not on {base + shot.path} after {timeout:.0f} s:\n{text}"
            )
        await asyncio.sleep(0.25)
    for _ in range(6):  # grow the viewport until nothing scrolls (growing can move the layout)
        over_x, over_y = await page.evaluate(OVERFLOW_JS)
        grow_x = shot.grow_x and over_x > 0 and width < MAX_SIDE
        grow_y = shot.grow_y and over_y > 0 and height < MAX_SIDE
        if not (grow_x or grow_y):
            break
        width = min(MAX_SIDE, width + over_x + 8) if grow_x else width
        height = min(MAX_SIDE, height + over_y + 8) if grow_y else height
        await page.size(width, height)
        await asyncio.sleep(0.5)
    # Settled when two screenshots a second apart are the same (the run graph animates its zoom).
    previous, image = b"", await page.png()
    for _ in range(30):
        if image == previous:
            break
        await asyncio.sleep(1.0)
        previous, image = image, await page.png()
    else:
        print(f"warning: {shot.name} still changing after 30 s; keeping the last picture", file=sys.stderr)
    path = out / f"{shot.name}.png"
    path.write_bytes(image)
    print(f"{path.name}: {width}x{height}, {len(image) // 1000} kB", flush=True)


def shots(base: str) -> list[Shot]:
    """What to photograph, found through the API: the last cycle's run and its artifacts."""
    runs = get_json(f"{base}/api/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 50})
    cycles = [r for r in runs if r["name"].startswith("daily-cycle ")]
    if len(cycles) < 2:
        raise SystemExit(f"expected at least two daily-cycle runs, found {[r['name'] for r in runs]}")
    last = cycles[0]
    date = last["name"].removeprefix("daily-cycle ")
    artifacts = get_json(
        f"{base}/api/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [last["id"]]}}, "sort": "CREATED_DESC", "limit": 50},
    )
    by_key = {a["key"]: a["id"] for a in artifacts if a["key"]}

    def artifact(name: str, key: str, ready: list[str], **frame: Any) -> Shot:
        return Shot(name, f"/v2/artifacts/artifact/{by_key[key]}", [key, *ready], **frame)

    run = f"/v2/runs/flow-run/{last['id']}"
    return [
        Shot("01-flow-runs", "/v2/runs", [r["name"] for r in cycles], grow_y=True),
        Shot(
            "02-daily-cycle-logs",
            f"{run}?tab=Logs",
            ["advanced ", "dispatch: ", f"cycle {date}: "],
            grow_y=True,
        ),
        Shot("03-daily-cycle-artifacts", f"{run}?tab=Artifacts", sorted(by_key), grow_y=True),
        artifact("04-accounts-by-stage-and-bucket", "accounts-by-stage-and-bucket", ["total"], grow_x=True),
        artifact("05-transition-matrix", "transition-matrix", ["from"], grow_x=True),
        artifact("06-messages-by-status", "messages-by-status", ["count"], grow_x=True),
        artifact("07-compliance", "compliance", ["violations"], grow_x=True),
        artifact("08-cycle-summary", "cycle-summary", [f"Daily cycle {date}"]),
        artifact("09-cycle-trend", "cycle-trend", ["messages sent", date], grow_x=True),
        artifact("10-cycle-trend-chart", "cycle-trend-chart", ["Trend over the last", date]),
        # The same chart in the older UI (its "Switch to V1 UI" link), which lays markdown out otherwise.
        Shot(
            "11-cycle-trend-chart-v1",
            f"/artifacts/artifact/{by_key['cycle-trend-chart']}",
            ["cycle-trend-chart", "Trend over the last", date],
        ),
    ]


async def photograph(devtools: str, base: str, out: Path) -> None:
    async with websockets.connect(devtools, max_size=64 * 2**20) as socket:
        page = Page(socket)
        for shot in shots(base):
            await take(page, base, shot, out)


def optimise(out: Path) -> None:
    """Recompress the PNGs losslessly when Pillow is there (reportlab brings it), and say which
    ones are still over the size this folder allows."""
    try:
        from PIL import Image
    except ImportError:
        print("Pillow is not installed: the PNGs stay as Chromium wrote them", file=sys.stderr)
    else:
        for path in sorted(out.glob("*.png")):
            with Image.open(path) as image:
                image.load()
            smaller = io.BytesIO()
            image.save(smaller, format="PNG", optimize=True)
            if smaller.tell() < path.stat().st_size:
                path.write_bytes(smaller.getvalue())
    for path in sorted(out.glob("*.png")):
        if path.stat().st_size > MAX_PNG_BYTES:
            print(f"warning: {path.name} is {path.stat().st_size // 1000} kB", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="where the PNGs go (default: beside this file)"
    )
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=4, help="simulated days, one daily cycle each (>= 2)")
    parser.add_argument("--as-of", default=FIRST_DAY, help=f"the first day's instant (default {FIRST_DAY})")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    args = parser.parse_args(argv)
    if args.days < 2:
        parser.error("--days must be at least 2: the trend needs more than one cycle")
    python = Path(sys.executable)
    prefect = python.with_name("prefect")
    if not prefect.exists():
        parser.error(f"no prefect beside {python}: run this with the project's virtual environment")
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="arrears-shots-"))
    try:
        with prefect_server(work, prefect) as base:
            print(f"prefect server with its UI at {base} ({time.monotonic() - began:.0f} s)", flush=True)
            run_demo(work, python, f"{base}/api", args.accounts, args.days, args.as_of)
            print(
                f"arrears demo: {args.days} daily cycles of {args.accounts:,} accounts "
                f"({time.monotonic() - began:.0f} s)",
                flush=True,
            )
            with chromium(work, args.chromium) as devtools:
                asyncio.run(photograph(devtools, base, args.out))
        optimise(args.out)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
