"""Throughput of `send_batch` against the sandbox running in its own process.

    python benchmarks/sms.py [--count 20000] [--repeat 3] [--providers sandbox,twilio] [--concurrency N]

Prints messages per second for each provider (median of the runs), after checking that the
sandbox recorded exactly one message per request. The daily cycle's budget (DESIGN §4) is
~100,000 messages in a few tens of seconds on a 2-core machine, so the default provider must
sustain ≥ 5,000 msg/s here.
"""

from __future__ import annotations

import argparse
import statistics
import time

from integrations.providers import DEFAULT_PROVIDER, build_provider
from integrations.sandbox import start_sandbox
from integrations.sms import SmsRequest, SmsResult


def requests(count: int, prefix: str) -> list[SmsRequest]:
    return [
        SmsRequest(
            idempotency_key=f"{prefix}:{i:07d}",
            to=f"+86139{i:08d}",
            template="SMS_REMINDER_1",
            params={"name": "Li Wei", "amount": f"{1000 + i % 997}.00", "due": "2026-12-01"},
            body=f"Li Wei, your car loan payment of {1000 + i % 997}.00 was due on 2026-12-01.",
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--providers", default=f"{DEFAULT_PROVIDER},twilio,aliyun")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=None, help="override the provider's default")
    args = parser.parse_args()

    with start_sandbox() as sandbox:
        for name in args.providers.split(","):
            credentials = dict(sandbox.credentials)
            if args.concurrency:
                credentials["concurrency"] = str(args.concurrency)
            rates = []
            with build_provider("sms", name, sandbox.base_url, credentials) as provider:
                provider.send_batch(requests(200, f"{name}-warm"))  # connections, first-call costs
                for run in range(args.repeat):
                    sandbox.reset()
                    batch = requests(args.count, f"{name}-{run}")
                    started = time.perf_counter()
                    outcomes = provider.send_batch(batch)
                    elapsed = time.perf_counter() - started
                    sent = sum(isinstance(o, SmsResult) for o in outcomes)
                    recorded = sandbox.stats()["messages"]
                    assert sent == recorded == args.count, (name, sent, recorded)
                    rates.append(args.count / elapsed)
                concurrency = provider.settings.concurrency  # type: ignore[attr-defined]
            print(
                f"{name:8s} {args.count} messages: median {statistics.median(rates):7.0f} msg/s, "
                f"min {min(rates):7.0f}, max {max(rates):7.0f} over {args.repeat} runs "
                f"(batch {provider.info.batch_size}, concurrency {concurrency})"
            )


if __name__ == "__main__":
    main()
