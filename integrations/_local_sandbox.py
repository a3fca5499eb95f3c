"""Running the letters and agency sandboxes: in this process (uvicorn in a thread) or in their own,
and the controls their handles share.

`integrations.sandbox.start_sandbox` runs a sandbox in its own process, which a cycle sending
100,000 messages needs; `arrears sandbox` can start these two that way too. Their contract suites
start them in the test process instead (`InProcessServer`): they see dozens of requests a day, no
process needs spawning, and a failure shows in one traceback.

Both sandboxes answer the same controls under `/_sandbox/` (health, reset, faults, rules, the
callback URL, delivering and listing callbacks, stats); `SandboxControls` is their client side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import httpx
import uvicorn
from fastapi import FastAPI

__all__ = ["CallbackReceiver", "InProcessServer", "SandboxControls"]


class InProcessServer:
    """uvicorn serving `app` on 127.0.0.1 (port 0: any free one) until `stop()` or the block ends."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, name="sandbox-server", daemon=True)
        self.base_url = ""

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the in-process sandbox server did not start")
            time.sleep(0.01)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class SandboxControls:
    """A running letters or agency sandbox: where it listens, what it accepts, and its controls."""

    def __init__(self, base_url: str, credentials: Mapping[str, str], stop: Callable[[], None]) -> None:
        self.base_url = base_url
        self._credentials = dict(credentials)
        self._stop = stop
        self.admin = httpx.Client(base_url=base_url, timeout=10.0)

    @property
    def credentials(self) -> dict[str, str]:
        """The settings mapping a provider of this kind needs against this sandbox."""
        return dict(self._credentials)

    def _post(self, path: str, payload: Any = None) -> Any:
        response = self.admin.post(path, json=payload)
        response.raise_for_status()
        return response.json()

    def _get(self, path: str, **params: Any) -> Any:
        response = self.admin.get(path, params={k: v for k, v in params.items() if v is not None})
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Forget everything received, every rule, fault, callback URL and callback sent."""
        self._post("/_sandbox/reset")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace the faults (latency, 429/503 with Retry-After, 500 or a timeout after executing,
        callbacks dropped or duplicated)."""
        return dict(self._post("/_sandbox/faults", faults))

    def set_rules(self, **rules: Any) -> dict[str, Any]:
        """Replace the rules that move things along over time, and push their webhooks."""
        return dict(self._post("/_sandbox/rules", rules))

    def register_callback(self, url: str | None) -> None:
        """Where webhooks go (None: nowhere; events then wait)."""
        self._post("/_sandbox/callbacks/url", {"url": url})

    def deliver_callbacks(self) -> dict[str, Any]:
        """Push every pending event now; answers how many were delivered, dropped, failed."""
        return dict(self._post("/_sandbox/callbacks/deliver"))

    def callbacks(self) -> list[dict[str, Any]]:
        """Every push attempt, oldest first: url, outcome, status code, headers, body."""
        return list(self._get("/_sandbox/callbacks")["callbacks"])

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/_sandbox/stats"))

    def stop(self) -> None:
        self.admin.close()
        self._stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class CallbackReceiver:
    """A webhook on 127.0.0.1 for the contract suites: answers `status` (200) and keeps every request."""

    def __init__(self, path: str = "/callbacks") -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="callbacks", daemon=True
        )
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[dict[str, str], bytes]]:
        """The requests received once there are `count` of them (or what came within `timeout`)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
