"""Throughput of `arrears import accounts` (DESIGN §8): a generated portfolio through `run_import`.

    python benchmarks/importing.py [--accounts 1000000] [--database-url URL] [--seed 1]
                                   [--addresses] [--again] [--chunk-size N] [--parse-workers N]
                                   [--workdir DIR] [--keep] [--profile FILE]

Generates `--accounts` accounts (`arrears.simulate`, timed apart; with the mailing address columns
only if `--addresses`, as when issue 14's figures were first measured) as a CSV file, migrates the
database (a fresh SQLite file in the working directory, or `--database-url`, which must hold no
accounts yet: a PostgreSQL database for COPY), then imports the file with the real importer in a
child process, so that the figures (wall, CPU, peak RSS) are the import's own. `--again` imports
the same file a second time, the path of a daily file in which nothing changed.

Issue 14's target on 2 cores: 1,000,000 accounts in at most 60 s (16,667 accounts/s), peak RSS
of the importing process well under 1 GiB. Beyond the chunks in flight it grows with the file by
one entry per account id and borrower id, for the rules across rows: about 290 MiB a million
(200,000 accounts about 200 MiB, 1,000,000 430 MiB on 5 December 2026). The machine's load
average is printed before and after: on a shared machine every figure moves with it.

The last line on stdout is one JSON object (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

TARGET_ACCOUNTS_PER_S = 1_000_000 / 60
TARGET_RSS_MIB = 1024.0
BUSINESS_DATE = date(2026, 12, 1)
IMPORTED_AT = datetime(2026, 11, 30, 1, tzinfo=UTC)


def generate(n: int, seed: int, path: Path, addresses: bool) -> float:
    from arrears.simulate import generate_portfolio, write_accounts_file

    started = time.perf_counter()
    rows = generate_portfolio(n, seed=seed, business_date=BUSINESS_DATE, addresses=addresses)
    write_accounts_file(rows, path)
    return time.perf_counter() - started


def import_file(
    url: str, path: str, chunk_size: int | None, profile: str | None, parse_workers: int | None
) -> dict[str, Any]:
    """Runs in a spawned child: migrate, then import `path` once, timed, with its peak RSS (the
    importing process's own and, apart, its parsing workers')."""
    from arrears.importing import Kind, open_source
    from arrears.importing.parallel import PARSE_WORKERS
    from arrears.storage import get_engine, migrate
    from arrears.storage.importer import CHUNK_SIZE, run_import

    engine = get_engine(url)
    migrate(engine)
    started, cpu = time.perf_counter(), time.process_time()
    with open_source(Path(path), Kind.ACCOUNTS) as source:
        call = lambda: run_import(  # noqa: E731
            engine,
            source,
            chunk_size=chunk_size or CHUNK_SIZE,
            parse_workers=PARSE_WORKERS if parse_workers is None else parse_workers,
            now=IMPORTED_AT,
        )
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            summary = profiler.runcall(call)
            profiler.dump_stats(profile)
        else:
            summary = call()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    engine.dispose()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "workers_cpu_s": workers.ru_utime + workers.ru_stime,
        "workers_peak_rss_mib": workers.ru_maxrss / 1024,
        "read": summary.read,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        "counts": summary.as_dict(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def in_child(*args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(import_file, *args).result()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000, help="portfolio size (default 1,000,000)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in the working directory")
    parser.add_argument("--seed", type=int, default=1, help="portfolio seed (default 1)")
    parser.add_argument(
        "--addresses", action="store_true", help="with the six mailing address columns (default: without)"
    )
    parser.add_argument("--again", action="store_true", help="import the same file a second time")
    parser.add_argument("--chunk-size", type=int, help="records per chunk (default: the importer's)")
    parser.add_argument("--parse-workers", type=int, help="parsing processes (default: the importer's)")
    parser.add_argument("--workdir", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the (first) import here")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arrears-import-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{workdir / 'arrears.db'}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        path = workdir / f"accounts-{args.accounts}-{args.seed}{'-addresses' if args.addresses else ''}.csv"
        generated = None if path.exists() else generate(args.accounts, args.seed, path, args.addresses)
        size_mib = path.stat().st_size / 2**20
        load_before = os.getloadavg()
        profile = str(args.profile) if args.profile else None
        runs = [in_child(url, str(path), args.chunk_size, profile, args.parse_workers)]
        if args.again:
            runs.append(in_child(url, str(path), args.chunk_size, None, args.parse_workers))
        load_after = os.getloadavg()
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"accounts file: {args.accounts:,} rows, {size_mib:,.1f} MiB", end="")
    print(f" (generated in {generated:.1f} s)" if generated is not None else " (reused)")
    print(f"database: {url.split('@')[-1] if '@' in url else url}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} cores)")
    for name, run in zip(("import", "again"), runs, strict=False):
        rate = run["read"] / run["wall_s"] if run["wall_s"] else 0.0
        counts = run["counts"]
        print(
            f"{name:>7}: {run['wall_s']:7.1f} s wall, {run['cpu_s']:7.1f} s CPU "
            f"(+ {run['workers_cpu_s']:.1f} s in parsing workers), {rate:10,.0f} accounts/s, "
            f"peak RSS {run['peak_rss_mib']:,.0f} MiB; accepted {run['accepted']:,}, rejected "
            f"{run['rejected']:,}; created {counts['created']:,}, updated {counts['updated']:,}, "
            f"unchanged {counts['unchanged']:,}"
        )
    first = runs[0]
    rate = first["read"] / first["wall_s"] if first["wall_s"] else 0.0
    targets = {
        "accounts_per_s": rate >= TARGET_ACCOUNTS_PER_S,
        "peak_rss": all(run["peak_rss_mib"] <= TARGET_RSS_MIB for run in runs),
    }
    figures = {
        "accounts": args.accounts,
        "database": url.split("+")[0].split(":")[0],
        "file_mib": round(size_mib, 1),
        "wall_s": round(first["wall_s"], 2),
        "cpu_s": round(first["cpu_s"], 2),
        "workers_cpu_s": round(first["workers_cpu_s"], 2),
        "accounts_per_s": round(rate),
        "peak_rss_mib": round(first["peak_rss_mib"], 1),
        "workers_peak_rss_mib": round(first["workers_peak_rss_mib"], 1),
        "again_wall_s": round(runs[1]["wall_s"], 2) if len(runs) > 1 else None,
        "again_peak_rss_mib": round(runs[1]["peak_rss_mib"], 1) if len(runs) > 1 else None,
        "rejected": first["rejected"],
        "load_before": round(load_before[0], 2),
        "load_after": round(load_after[0], 2),
        "cores": os.cpu_count(),
        "targets_met": targets,
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
