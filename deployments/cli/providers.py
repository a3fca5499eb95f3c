"""`arrears providers list [--check] [--json]` and `arrears sandbox [--kind K] [--port N]`.

What an integrator runs after installing a provider plugin: is it found (entry-point group
`arrears.providers`), does it load and satisfy its kind's protocol, is it the one selected
(`ARREARS_<KIND>_PROVIDER`), and does it answer (`--check`: a cheap call against the configured
base URL, or against a sandbox started for the purpose when the selection is `sandbox`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from deployments.cli._common import CliError, app, console, emit_json, stop_on_signals
from integrations import registry

# Settings, provider metadata and the sandbox are imported where they are used: `arrears --help`
# loads neither pydantic nor httpx.
if TYPE_CHECKING:
    from integrations.metadata import ProviderInfo
    from integrations.sandbox import SandboxHandle

__all__ = ["KINDS", "SANDBOX_SERVERS", "inventory", "providers_app"]

KINDS = ("sms", "court", "bureau", "letters", "agency")  # listed even when nothing of the kind is installed
SANDBOX_SERVERS = {kind: f"integrations.{kind}.sandbox_server" for kind in KINDS}
HEALTH_ID = "arrears-health-check-0000"  # an id no provider has issued

providers_app = typer.Typer(
    name="providers",
    help="Provider plugins: what is installed and selected, and whether it answers.",
    no_args_is_help=True,
)
app.add_typer(providers_app)


# -- what is selected -------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The provider settings of one kind. `credentials` hold secrets: never print them."""

    kind: str
    name: str
    explicit: bool  # set by the operator, not a default
    base_url: str | None
    credentials: Mapping[str, str]

    def public(self) -> dict[str, Any]:
        from arrears.settings import redact_url

        # A base URL may carry a password (https://user:pass@host): shown masked, used as is.
        base_url = redact_url(self.base_url) if self.base_url else self.base_url
        return {"name": self.name, "explicit": self.explicit, "base_url": base_url}


def _env_json(variable: str) -> dict[str, str]:
    raw = os.environ.get(variable)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CliError(f"{variable} must be a JSON object")  # never echo it: it holds secrets
    return {str(k): str(v) for k, v in value.items()}


def selection(kind: str) -> Selection:
    """`<kind>_provider`, `_base_url`, `_credentials` from settings, or `ARREARS_<KIND>_*` for a kind
    the settings do not know yet."""
    from pydantic import SecretStr

    from arrears.settings import get_settings
    from integrations.providers import DEFAULT_PROVIDER

    try:
        settings = get_settings()
    except ValueError as error:  # pydantic names the field, not the value
        raise CliError(f"invalid settings: {str(error).splitlines()[0]}") from None
    prefix = f"ARREARS_{kind.upper()}_"
    name = (
        getattr(settings, f"{kind}_provider", None) or os.environ.get(prefix + "PROVIDER") or DEFAULT_PROVIDER
    )
    explicit = prefix + "PROVIDER" in os.environ or f"{kind}_provider" in settings.model_fields_set
    base_url = getattr(settings, f"{kind}_base_url", None) or os.environ.get(prefix + "BASE_URL") or None
    stored = getattr(settings, f"{kind}_credentials", None)
    if stored is None:
        credentials = _env_json(prefix + "CREDENTIALS")
    else:
        credentials = {
            k: v.get_secret_value() if isinstance(v, SecretStr) else str(v) for k, v in stored.items()
        }
    return Selection(kind, name, explicit, base_url, credentials)


# -- what is installed ---------------------------------------------------------------------------


def _packages() -> dict[str, str]:
    """Entry-point name -> the distribution that declares it, e.g. `arrears-sms-example 0.1.0`."""
    found = {}
    for ep in entry_points(group=registry.GROUP):
        dist = getattr(ep, "dist", None)
        found[ep.name] = f"{dist.name} {dist.version}" if dist is not None else "?"
    return found


def _info(cls: Any) -> ProviderInfo:
    info: ProviderInfo = cls.info  # the registry has checked that it is there, of the right kind
    return info


def inventory() -> dict[str, dict[str, Any]]:
    """Every provider of every kind, loaded and checked against its protocol, with the selection."""
    packages = _packages()
    names = set(registry.BUILTIN) | set(packages)
    kinds = list(KINDS) + sorted({n.partition(".")[0] for n in names if "." in n} - set(KINDS))
    report: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        chosen = selection(kind) if kind in KINDS else None  # a kind we do not use has no setting
        found, failures = registry.discover(kind)
        providers = [
            {
                "name": short,
                "entry_point": f"{kind}.{short}",
                "target": f"{cls.__module__}:{cls.__qualname__}",
                "title": _info(cls).title,
                "package": packages.get(f"{kind}.{short}", "arrears (built in)"),
                "secrets": _info(cls).secret_fields(),
                "selected": chosen is not None and short == chosen.name,
            }
            for short, cls in sorted(found.items())
        ]
        problems = [{"entry_point": f.name, "target": f.target, "error": f.error} for f in failures]
        report[kind] = {
            "selected": None if chosen is None else {**chosen.public(), "available": chosen.name in found},
            "providers": providers,
            "failures": problems,
            "classes": found,
        }
    malformed = sorted(n for n in names if "." not in n)
    if malformed:
        report.setdefault("?", {"selected": None, "providers": [], "failures": [], "classes": {}})
        report["?"]["failures"] += [
            {"entry_point": n, "target": "", "error": "entry-point name must be <kind>.<name>"}
            for n in malformed
        ]
    return report


def _load_error(kind: str, entry: dict[str, Any]) -> str | None:
    """Why the selected provider failed to load, if it is installed but broken (None: not installed,
    or loaded)."""
    chosen = entry["selected"]
    if chosen is None or chosen["available"]:
        return None
    full = f"{kind}.{chosen['name']}"
    return next((str(f["error"]) for f in entry["failures"] if f["entry_point"] == full), None)


def _selection_missing(entry: dict[str, Any]) -> bool:
    """The selected provider is absent, and that matters: chosen by the operator, or the kind has others."""
    chosen = entry["selected"]
    return chosen is not None and not chosen["available"] and (chosen["explicit"] or bool(entry["providers"]))


# -- sandboxes ----------------------------------------------------------------------------------


def sandbox_available(kind: str) -> bool:
    try:
        return importlib.util.find_spec(SANDBOX_SERVERS[kind]) is not None
    except ModuleNotFoundError:  # the kind's package itself is missing
        return False


def sandbox_credentials(kind: str, mapping: Mapping[str, str]) -> dict[str, str]:
    """The provider settings for a sandbox of `kind` started with `mapping`: the kind's
    `integrations.<kind>.sandbox.provider_credentials` adapts it when the kind has one."""
    module_name = f"integrations.{kind}.sandbox"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name not in (module_name, f"integrations.{kind}"):
            raise
        return dict(mapping)
    adapt = getattr(module, "provider_credentials", None)
    return dict(adapt(mapping)) if adapt is not None else dict(mapping)


@contextmanager
def _started(
    kind: str, port: int = 0, host: str = "127.0.0.1"
) -> Iterator[tuple[SandboxHandle, dict[str, str]]]:
    from integrations.sandbox import start_sandbox  # here: it loads httpx

    with start_sandbox(port, host=host, server=SANDBOX_SERVERS[kind]) as handle:
        yield handle, sandbox_credentials(kind, handle.credentials)


# -- health checks ------------------------------------------------------------------------------


def _probe(kind: str, provider: Any) -> str:
    """One cheap, read-only call that needs valid credentials and a live endpoint.

    A provider's own `check()` comes first: it authenticates against a resource that must exist
    (Twilio's account), so a wrong base URL fails it. A lookup of a message or filing we never sent
    cannot tell "no such message" from "no such endpoint": both are a 404."""
    from integrations.court.protocol import FilingNotFound
    from integrations.sms.protocol import SmsRequest

    check = getattr(provider, "check", None)
    if callable(check):
        return str(check())
    if kind == "sms":
        request = SmsRequest(idempotency_key=HEALTH_ID, to="+15005550006", template="HEALTH", body="health")
        found = provider.status(request, HEALTH_ID)
        return "status lookup answered" + (" (found a message?)" if found is not None else "")
    if kind == "court":
        try:
            provider.status(HEALTH_ID)
        except FilingNotFound:
            return "status lookup answered (no such filing, as expected)"
        return "status lookup answered"
    return f"built; the {kind} protocol has no harmless call to probe with"  # a bureau pull is an inquiry


def health_check(kind: str, chosen: Selection, cls: Any) -> dict[str, Any]:
    """Build the selected provider (against a fresh sandbox for `sandbox` without a base URL) and probe it."""
    from integrations.providers import DEFAULT_PROVIDER

    start = time.monotonic()
    try:
        with ExitStack() as stack:
            if chosen.base_url:
                base_url, credentials = chosen.base_url, dict(chosen.credentials)
            elif chosen.name == DEFAULT_PROVIDER:
                if not sandbox_available(kind):
                    raise LookupError(
                        f"no sandbox server for {kind}: {SANDBOX_SERVERS[kind]} is not installed"
                    )
                handle, credentials = stack.enter_context(_started(kind))
                base_url = handle.base_url
            else:
                raise LookupError(f"ARREARS_{kind.upper()}_BASE_URL is not set")
            if "retry_attempts" in cls.info.settings.model_fields:  # a health check answers now or fails
                credentials["retry_attempts"] = "1"
            provider = stack.enter_context(cls.from_config(base_url, credentials))
            detail = _probe(kind, provider)
        ok = True
    except Exception as error:
        ok, detail = False, f"{type(error).__name__}: {error}"
    return {"ok": ok, "detail": detail, "seconds": round(time.monotonic() - start, 2)}


# -- commands -----------------------------------------------------------------------------------


@providers_app.command("list")
def list_providers(
    check: Annotated[
        bool, typer.Option("--check", help="Build each selected provider and make one cheap call.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Every provider found in the `arrears.providers` entry points, by kind, with the selected one marked.

    Exit code 1 if a selected provider is missing or, with --check, does not answer.
    """
    report = inventory()
    ok = True
    for kind, entry in report.items():
        entry["check"] = None
        if _selection_missing(entry):
            ok = False
        if (
            check
            and entry["selected"] is not None
            and (entry["selected"]["available"] or _selection_missing(entry))
        ):
            cls = entry["classes"].get(entry["selected"]["name"])
            if cls is None:
                error = _load_error(kind, entry)
                entry["check"] = {
                    "ok": False,
                    "detail": "the selected provider is not installed"
                    if error is None
                    else f"the selected provider failed to load: {error}",
                    "seconds": 0.0,
                }
            else:
                entry["check"] = health_check(kind, selection(kind), cls)
            ok = ok and entry["check"]["ok"]
    for entry in report.values():
        del entry["classes"]
    if json_output:
        emit_json({"ok": ok, "kinds": report})
    else:
        _print(report)
    if not ok:
        raise typer.Exit(1)


def _line(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def _print(report: dict[str, dict[str, Any]]) -> None:
    for kind, entry in report.items():
        chosen = entry["selected"]
        if chosen is None:
            _line(f"[bold]{escape(kind)}[/bold]: not a kind of provider arrears uses")
        else:
            where = f" at {escape(chosen['base_url'])}" if chosen["base_url"] else ""
            error = _load_error(kind, entry)
            if chosen["available"]:
                state = ""
            elif error is None:
                state = " [red](not installed)[/red]"
            else:
                state = " [red](failed to load)[/red]"
            _line(f"[bold]{kind}[/bold]: selected {escape(chosen['name'])}{where}{state}")
        if not entry["providers"] and not entry["failures"]:
            _line("    no providers installed")
        width = max((len(p["name"]) for p in entry["providers"]), default=0)
        for p in entry["providers"]:
            mark = "*" if p["selected"] else " "
            _line(
                f"  {mark} {escape(p['name']).ljust(width)}  {escape(p['title'])}  "
                f"[dim]{escape(p['target'])} · {escape(p['package'])} · protocol ok[/dim]"
            )
        for f in entry["failures"]:
            _line(f"  [red]! {escape(f['entry_point'])}[/red] ({escape(f['target'])}): {escape(f['error'])}")
        if entry.get("check") is not None:
            c = entry["check"]
            verdict = "[green]ok[/green]" if c["ok"] else "[red]failed[/red]"
            _line(
                f"  check {escape(chosen['name'])}: {verdict}: {escape(c['detail'])} ({c['seconds']:.2f} s)"
            )


def _pause(seconds: float) -> None:
    """The foreground loop's wait between looks at the sandbox processes."""
    time.sleep(seconds)


@app.command()
def sandbox(
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help=f"{', '.join(KINDS[:-1])} or {KINDS[-1]} (default: every kind that has a sandbox)."
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Port of the first sandbox; the next kinds take the next ports (0: free ports).",
        ),
    ] = 0,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Run the sandbox provider servers in the foreground, printing their URLs and generated credentials."""
    from integrations.sandbox import SandboxError

    if kind is not None and kind not in KINDS:
        raise CliError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    kinds = [kind] if kind else list(KINDS)
    missing = [k for k in kinds if not sandbox_available(k)]
    if kind is not None and missing:
        raise CliError(f"no {kind} sandbox yet: {SANDBOX_SERVERS[kind]} is not installed")
    with stop_on_signals() as stop_requested, ExitStack() as stack:  # Ctrl-C and `kill` alike
        running: list[tuple[str, SandboxHandle]] = []
        for n, k in enumerate(kinds):
            if stop_requested():
                break
            if k in missing:
                print(f"{k} sandbox: not available ({SANDBOX_SERVERS[k]} is not installed)", flush=True)
                continue
            try:
                handle, credentials = stack.enter_context(_started(k, port + n if port else 0, host))
            except (OSError, SandboxError) as error:  # port taken, address not ours, server crashed
                raise CliError(f"cannot start the {k} sandbox: {error}", exit_code=1) from None
            running.append((k, handle))
            upper = k.upper()
            print(f"{k} sandbox: {handle.base_url}", flush=True)
            print(f"  ARREARS_{upper}_PROVIDER=sandbox", flush=True)
            print(f"  ARREARS_{upper}_BASE_URL={handle.base_url}", flush=True)
            print(f"  ARREARS_{upper}_CREDENTIALS='{json.dumps(credentials)}'", flush=True)
        if not stop_requested():
            print("sandboxes running; Ctrl-C stops them", flush=True)
        while not stop_requested():
            dead = [k for k, handle in running if not handle.alive()]
            if dead:
                raise CliError(f"the {', '.join(dead)} sandbox stopped unexpectedly", exit_code=1)
            _pause(0.2)
    print("stopped", flush=True)
