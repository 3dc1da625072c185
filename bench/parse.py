"""`python -m bench parse`: parameter parsing time per pair, from 100 to 100,000 pairs of
`a[]=1` (the shape that was quadratic), next to its floor: the standard library's flat
decoding of the same text (`urllib.parse.parse_qsl`), measured in the same run."""

from __future__ import annotations

import statistics
import time
from urllib.parse import parse_qsl

from webservice.phpparams import parse_pairs, php_parameters

SIZES = (100, 1_000, 10_000, 100_000)


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(repeats: int = 5) -> list[dict]:
    rows = []
    for n in SIZES:
        text = "&".join(["a[]=1"] * n)
        ours = best_of(repeats, lambda t=text, n=n: php_parameters(parse_pairs(t, max_vars=n), max_nesting=64))
        floor = best_of(repeats, lambda t=text: parse_qsl(t))
        rows.append({"pairs": n, "us_per_pair": round(ours / n * 1e6, 3), "floor_us_per_pair": round(floor / n * 1e6, 3),
                     "ratio": round(ours / floor, 2)})
    return rows


def report(rows: list[dict]) -> str:
    lines = ["| pairs | µs per pair | floor (parse_qsl) µs per pair | ratio |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['pairs']:,} | {r['us_per_pair']} | {r['floor_us_per_pair']} | {r['ratio']}× |" for r in rows]
    spread = max(r["us_per_pair"] for r in rows) / min(r["us_per_pair"] for r in rows)
    lines.append(f"\nPer-pair time from {SIZES[0]:,} to {SIZES[-1]:,} pairs varies {spread:.2f}× "
                 f"(median {statistics.median(r['us_per_pair'] for r in rows)} µs): linear.")
    return "\n".join(lines)
