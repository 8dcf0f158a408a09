"""How often a slot ridden on another Redis step's round trip is kept and used, under the
benchmark's load (the code check's and the start's riders, ``governor.SlotRider``).

    python -m bench.riders            # settings (env): BENCH_REQUESTS, BENCH_CONCURRENCY
Prints, for each endpoint and both gurugrow apps (caches on and off), the change of
``gurugrow_crm_slot_riders_total`` by outcome while the endpoint ran.
"""

from __future__ import annotations

import re

import requests

from bench.run import CONCURRENCY, REQUESTS, Stack, drive, scenarios

RIDDEN = ("POST /auth/check", "POST /auth/start")
SAMPLE = re.compile(r'gurugrow_crm_slot_riders_total\{outcome="(\w+)"\} ([0-9.e+]+)')


def rider_outcomes(base: str) -> dict[str, float]:
    """The app's rider counters, summed over its workers (its /metrics page)."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    return {m.group(1): float(m.group(2)) for m in SAMPLE.finditer(text)}


def main() -> None:
    stack = Stack()
    try:
        stack.start()
        for app in ("gurugrow", "gurugrow-caches-off"):
            base = f"http://127.0.0.1:{stack.ports[app]}"
            plan = scenarios(stack, base, True)
            for endpoint in RIDDEN:
                calls = plan[endpoint](REQUESTS, f"riders-{app}")  # a check's starts run here
                before = rider_outcomes(base)
                seconds, _, failures = drive(base, calls, CONCURRENCY)
                after = rider_outcomes(base)
                change = {k: int(v - before.get(k, 0.0)) for k, v in after.items()}
                print(f"{app:20} {endpoint:17} {REQUESTS / seconds:5.0f} req/s  "
                      f"failures {failures}  riders {change}", flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
