"""Starting a sandbox provider server, for the cycle, the demo and the tests.

`start_sandbox` runs one in its own process; `InProcessServer` serves an app in this one (uvicorn
in a thread), which the letters and agency contract suites use: they see dozens of requests, no
process needs spawning, and a failure shows in one traceback. `SandboxControls` is the client side
of the controls the letters and agency sandboxes answer under `/_sandbox/` (reset, faults, rules,
the webhook URL, delivering and listing webhooks, stats); `CallbackReceiver` is a webhook for the
contract suites.

A separate process, not a thread, for the SMS sandbox: it then has its own interpreter and GIL,
so a cycle sending 100,000 messages measures its own cost and not the server's. The parent binds the
listening socket (port 0 picks a free one, with no race) and hands it to the child, which exits
by itself if the parent dies.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Self

import httpx

from integrations._http import SERVER_KEEP_ALIVE_S, tls
from integrations.sms._sandbox_state import Credentials
from integrations.sms.sandbox import SERVER as SMS_SERVER

if TYPE_CHECKING:  # uvicorn and FastAPI load only where a server runs in this process
    from fastapi import FastAPI

SandboxCredentials = Credentials  # what a sandbox accepts; `Credentials.generate()` makes fresh ones

__all__ = [
    "CallbackReceiver",
    "InProcessServer",
    "SandboxControls",
    "SandboxCredentials",
    "SandboxError",
    "SandboxHandle",
    "connections_to",
    "requests_made",
    "start_sandbox",
]


class SandboxError(RuntimeError):
    """The sandbox process did not start, or did not answer its health check in time."""


@dataclass
class SandboxHandle:
    """A running sandbox: where it listens, what it accepts, and its controls (`reset`, `set_faults`…)."""

    base_url: str
    credentials: Mapping[str, str] = field(repr=False)
    process: subprocess.Popen[bytes] = field(repr=False)
    _admin: httpx.Client | None = field(default=None, repr=False)

    @property
    def admin(self) -> httpx.Client:
        if self._admin is None:
            self._admin = httpx.Client(base_url=self.base_url, timeout=10.0, verify=tls())
        return self._admin

    def reset(self) -> None:
        """Forget every message, idempotency record and fault."""
        self.admin.post("/_sandbox/reset").raise_for_status()

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace the faults (see `integrations.sms._sandbox_state.Faults` for the names)."""
        response = self.admin.post("/_sandbox/faults", json=faults)
        response.raise_for_status()
        return dict(response.json())

    def messages(self, **filters: Any) -> list[dict[str, Any]]:
        """Messages received, oldest first; filters: route, to, idempotency_key, out_id, limit, offset."""
        filters.setdefault("limit", 1_000_000)
        response = self.admin.get("/_sandbox/messages", params=filters)
        response.raise_for_status()
        return list(response.json()["messages"])

    def stats(self) -> dict[str, Any]:
        response = self.admin.get("/_sandbox/stats")
        response.raise_for_status()
        return dict(response.json())

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_sandbox(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    server: str = SMS_SERVER,
    credentials: Credentials | None = None,
    startup_timeout: float = 30.0,
    log_level: str = "warning",
) -> SandboxHandle:
    """Start `python -m <server>` on `host:port` (0: any free port) and wait until it is healthy.

    Credentials are fresh random ones unless given; they reach the child through its environment,
    not its command line, which other users of the machine can read.
    """
    creds = credentials or Credentials.generate()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
        bound_port = sock.getsockname()[1]
        sock.set_inheritable(True)
        env = {**os.environ, "ARREARS_SANDBOX_CREDENTIALS": json.dumps(creds.as_mapping())}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                server,
                "--fd",
                str(sock.fileno()),
                "--parent-pid",
                str(os.getpid()),
                "--log-level",
                log_level,
            ],
            pass_fds=(sock.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
        )
    finally:
        sock.close()  # the child holds its own copy
    handle = SandboxHandle(f"http://{host}:{bound_port}", MappingProxyType(creds.as_mapping()), process)
    deadline = time.monotonic() + startup_timeout
    while True:
        if process.poll() is not None:
            raise SandboxError(f"{server} exited with code {process.returncode} before answering")
        try:
            if handle.admin.get("/_sandbox/health", timeout=1.0).status_code == 200:
                return handle
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            handle.stop()
            raise SandboxError(f"{server} did not answer its health check within {startup_timeout:g}s")
        time.sleep(0.05)


def connections_to(base_url: str) -> int:
    """TCP connections this process holds open to the server at `base_url`, whatever opened them.

    The contract suites compare it before a provider is used and after it is closed: a provider
    whose `close()` left its connection pool open still holds one."""
    import psutil  # type: ignore[import-untyped]  # here: only the contract suites count them

    url = httpx.URL(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    hosts = {info[4][0] for info in socket.getaddrinfo(url.host, port, proto=socket.IPPROTO_TCP)}
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.raddr.ip in hosts
    )


def requests_made(sandbox: Any) -> int:
    """Requests a sandbox's vendor API has answered so far (its `requests.*` counters): a contract
    suite compares a refusal's cost with an accepted call's, so a provider that retries one shows."""
    return sum(n for k, n in sandbox.stats()["counters"].items() if k.startswith("requests."))


class InProcessServer:
    """uvicorn serving `app` on 127.0.0.1 (port 0: any free one) until `stop()` or the block ends."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.app = app
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_keep_alive=SERVER_KEEP_ALIVE_S,
            )
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
        self.admin = httpx.Client(base_url=base_url, timeout=10.0, verify=tls())

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
