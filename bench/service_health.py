"""Benchmark of the service-health check task: 100 local endpoints, a few slow, in one call.

Starts the sandbox (its switchable targets answer on 127.0.0.1), makes `--endpoints` targets of
which `--slow` answer after `--delay-ms`, and times the check task's function over all of them at
several `max_parallel` settings, against the slowest single check and the sum of all checks.

    uv run python bench/service_health.py                # 100 endpoints, 5 slow at 300 ms
    uv run python bench/service_health.py --repeat 9 --endpoints 100 --slow 5 --delay-ms 300
"""

from __future__ import annotations

import argparse
import statistics
import time

from moltbot.config.monitoring import ServiceCheck
from moltbot.sandbox import Sandbox
from tasks.http_checks import check_services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--slow", type=int, default=5)
    parser.add_argument("--delay-ms", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parallel", type=int, nargs="*", default=[20, 100, 1])
    args = parser.parse_args()

    with Sandbox() as sandbox:
        names = [f"svc-{index:03d}" for index in range(args.endpoints)]
        # The slow ones spread over the list, not bunched at its start.
        step = max(args.endpoints // max(args.slow, 1), 1)
        for index in range(0, step * args.slow, step):
            sandbox.state.targets.set(names[index], "slow", delay_ms=args.delay_ms)
        services = {name: ServiceCheck(url=f"{sandbox.base_url}/targets/{name}") for name in names}
        check_services.fn(services, max_parallel=20)  # warm-up: imports, first connections

        print(
            f"{args.endpoints} endpoints, {args.slow} slow at {args.delay_ms} ms; "
            f"median of {args.repeat} runs"
        )
        print("| max_parallel | total wall | slowest single check | sum of all checks |")
        print("|---|---|---|---|")
        for parallel in args.parallel:
            walls, slowest, sums = [], [], []
            for _ in range(args.repeat):
                started = time.perf_counter()
                results = check_services.fn(services, max_parallel=parallel)
                walls.append(time.perf_counter() - started)
                latencies = [result.latency_ms or 0.0 for result in results]
                assert all(result.ok for result in results), "a check failed"
                slowest.append(max(latencies) / 1000)
                sums.append(sum(latencies) / 1000)
            print(
                f"| {parallel} | {statistics.median(walls):.3f} s "
                f"| {statistics.median(slowest):.3f} s | {statistics.median(sums):.3f} s |"
            )


if __name__ == "__main__":
    main()
