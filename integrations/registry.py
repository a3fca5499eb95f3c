"""Finding provider classes: entry points of group `arrears.providers`, named `<kind>.<name>`.

Built-in providers are registered in pyproject.toml like any plugin; they are also listed here so
that a checkout whose metadata predates an entry (an editable install not yet refreshed) still
finds them, and for the same reason this list wins over our own distribution's metadata for a
built-in name (a class may have moved since the install). A plugin's load failure is reported on
its own and never hides the other providers; a loaded class is checked against its kind's
protocol before anyone uses it. A name two installed packages register is refused, naming both.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

__all__ = ["BUILTIN", "GROUP", "LoadFailure", "check_provider_class", "discover", "load"]

GROUP = "arrears.providers"
_DISTRIBUTION = "arrears"  # the distribution that ships the built-in providers
BUILTIN: dict[str, str] = {
    "sms.sandbox": "integrations.sms.sandbox:SandboxSmsProvider",
    "sms.twilio": "integrations.sms.twilio:TwilioSmsProvider",
    "sms.aliyun": "integrations.sms.aliyun:AliyunSmsProvider",
    "court.sandbox": "integrations.court.sandbox:SandboxCourtProvider",
    "court.ecf": "integrations.court.ecf:EcfCourtProvider",
    "bureau.sandbox": "integrations.bureau.sandbox:SandboxBureauProvider",
    "bureau.rest": "integrations.bureau.rest:RestBureauProvider",
    "letters.sandbox": "integrations.letters.sandbox:SandboxLettersProvider",
    "letters.lob": "integrations.letters.lob:LobLettersProvider",
    "agency.sandbox": "integrations.agency.sandbox:SandboxAgencyProvider",
    "agency.rest": "integrations.agency.rest:RestAgencyProvider",
}
# The Protocol each kind's classes are checked against before use.
_PROTOCOLS: dict[str, str] = {
    "sms": "integrations.sms.protocol:SmsProvider",
    "court": "integrations.court.protocol:CourtProvider",
    "bureau": "integrations.bureau.protocol:BureauProvider",
    "letters": "integrations.letters.protocol:LettersProvider",
    "agency": "integrations.agency.protocol:AgencyProvider",
}


@dataclass(frozen=True)
class LoadFailure:
    name: str
    target: str
    error: str


def _protocol(kind: str) -> type:
    target = _PROTOCOLS.get(kind)
    if target is None:
        raise LookupError(f"no provider kind {kind!r}")
    protocol: type = _import(target)
    return protocol


def _members(protocol: type) -> set[str]:
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {
        n
        for n, v in vars(protocol).items()
        if callable(v) and (not n.startswith("_") or n in ("__enter__", "__exit__"))
    }
    return names


def check_provider_class(cls: Any, kind: str, name: str | None = None) -> None:
    """Raise TypeError unless `cls` has every member of the kind's protocol and declares that kind
    and, when given, the entry point's short `name` (which settings select it by), and builds
    itself from settings (`from_config`, what `build_provider` calls): without it a class listed
    as `protocol ok` failed every run that selected it with an AttributeError."""
    missing = sorted(n for n in _members(_protocol(kind)) if not hasattr(cls, n))
    if missing:
        raise TypeError(f"{cls!r} lacks {', '.join(missing)} of the {kind} provider protocol")
    if not callable(getattr(cls, "from_config", None)):
        raise TypeError(f"{cls!r} lacks from_config(base_url, credentials), which builds it from settings")
    info = cls.info
    if getattr(info, "kind", None) != kind:
        raise TypeError(f"{cls!r} declares kind {getattr(info, 'kind', None)!r}, not {kind!r}")
    if name is not None and getattr(info, "name", None) != name:
        raise TypeError(
            f"{cls!r} declares name {getattr(info, 'name', None)!r}, not {name!r} of its entry point"
        )


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _entries() -> tuple[dict[str, str], dict[str, str]]:
    """Every `<kind>.<name>` with its target, and the names two installed packages both register,
    with why they cannot be told apart. Which of two plugins with one name `entry_points()` lists
    last depends on the order of `sys.path`: taking it would select another vendor's class
    without a word when a package is installed or upgraded, so neither is taken."""
    targets = dict(BUILTIN)
    claims: dict[str, dict[str, str]] = {}  # name -> {target: the package that registers it}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        package = getattr(dist, "name", None)
        if ep.name in BUILTIN and package == _DISTRIBUTION:
            continue  # our own metadata may predate a move of a built-in class; the list is current
        targets[ep.name] = ep.value  # another package's entry point wins over the built-in list
        version = getattr(dist, "version", None)
        claims.setdefault(ep.name, {})[ep.value] = f"{package or '?'}{f' {version}' if version else ''}"
    ambiguous = {
        name: f"{name} is registered by {len(by)} packages: "
        + ", ".join(f"{package} ({target})" for package, target in sorted((p, t) for t, p in by.items()))
        + "; uninstall all but one"
        for name, by in claims.items()
        if len(by) > 1
    }
    return targets, ambiguous


def discover(kind: str) -> tuple[dict[str, type], list[LoadFailure]]:
    """Every provider class of `kind`, by short name, and the entries that failed to load."""
    found: dict[str, type] = {}
    failures: list[LoadFailure] = []
    targets, ambiguous = _entries()
    for name, target in sorted(targets.items()):
        prefix, _, short = name.partition(".")
        if prefix != kind:
            continue
        if name in ambiguous:
            failures.append(LoadFailure(name, target, f"AmbiguousProvider: {ambiguous[name]}"))
            continue
        try:
            cls = _import(target)
            check_provider_class(cls, kind, short)
        except Exception as e:  # a broken plugin is reported, never fatal to the others
            failures.append(LoadFailure(name, target, f"{type(e).__name__}: {e}"))
            continue
        found[short] = cls
    return found, failures


def load(kind: str, name: str) -> type:
    """The provider class `<kind>.<name>` (`name` may carry the prefix); LookupError if unknown,
    TypeError if it fails to import or is not a provider of that kind and name."""
    full = name if name.startswith(f"{kind}.") else f"{kind}.{name}"
    targets, ambiguous = _entries()
    target = targets.get(full)
    if target is None:
        raise LookupError(f"no provider {full!r}; known: {', '.join(sorted(targets))}")
    if full in ambiguous:
        raise TypeError(ambiguous[full])
    try:
        cls = _import(target)
    except Exception as e:  # a plugin that fails to import is broken, not an unexplained crash
        raise TypeError(f"{full} ({target}) failed to load: {type(e).__name__}: {e}") from e
    check_provider_class(cls, kind, full.partition(".")[2])
    return cls
