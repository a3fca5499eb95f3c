"""Starting a sandbox provider server in its own process, for the cycle, the demo and the tests.

A separate process, not a thread: the sandbox then has its own interpreter and GIL, so a cycle
sending 100,000 messages measures its own cost and not the server's. The parent binds the
listening socket (port 0 picks a free one, with no race) and hands it to the child, which exits
by itself if the parent dies.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Self

import httpx

from integrations.sms._sandbox_state import Credentials
from integrations.sms.sandbox import SERVER as SMS_SERVER

SandboxCredentials = Credentials  # what a sandbox accepts; `Credentials.generate()` makes fresh ones

__all__ = ["SandboxError", "SandboxHandle", "start_sandbox"]


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
            self._admin = httpx.Client(base_url=self.base_url, timeout=10.0)
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
