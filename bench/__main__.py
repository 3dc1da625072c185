"""`python -m bench run [--size small|medium|full|many] [--db postgresql|sqlite|mariadb] [--repeat N]
[--soak SECONDS] [--url URL] [--rebuild]`, `python -m bench parse`, `python -m bench requests
[--baseline REF]`, `python -m bench sync [--baseline REF]`, `python -m bench odata` and
`python -m bench replicas [--size S] [--repeat N]`: see BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from bench import fixture, run

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def include(md_path: Path, db: str, size: str) -> None:
    """Put the run's table into BENCHMARKS.md between its markers (added at the end if new)."""
    begin, end = f"<!-- bench:{db}-{size} begin -->", f"<!-- bench:{db}-{size} end -->"
    block = f"{begin}\n{md_path.read_text()}\nRaw figures: [bench/results/{md_path.stem}.json](bench/results/{md_path.stem}.json)\n{end}"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        marker = "<!-- bench:results -->"
        text = text.replace(marker, f"{marker}\n\n{block}") if marker in text else text.rstrip() + f"\n\n{block}\n"
    BENCHMARKS.write_text(text)


def _before_after(sub, name: str, help: str, size: str, repeat: int, repeat_help: str):
    """A subcommand measuring on a fixture: its size, engine, repeats, URL and --no-include."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--size", choices=sorted(fixture.SIZES), default=size)
    p.add_argument("--db", choices=sorted(fixture.DEFAULT_URLS), default="postgresql")
    p.add_argument("--repeat", type=int, default=repeat, help=repeat_help)
    p.add_argument("--url", help="database URL (default: as for run)")
    p.add_argument("--no-include", action="store_true",
                   help="a trial: results to bench/work/, BENCHMARKS.md and bench/results/ left as they are")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="build or reuse the fixture, run every measurement, write the results")
    p.add_argument("--size", choices=sorted(fixture.SIZES), default="full")
    p.add_argument("--db", choices=sorted(fixture.DEFAULT_URLS), default="postgresql")
    p.add_argument("--repeat", type=int, help="repeats of each latency (default per size)")
    p.add_argument("--soak", type=int, help="seconds of sustained load for RSS (default 600 full, 60 small)")
    p.add_argument("--url", help="database URL (default: alx_bench_<size> on the local server / bench/work/)")
    p.add_argument("--rebuild", action="store_true", help="build the fixture again even if it matches")
    p.add_argument("--no-include", action="store_true", help="do not update BENCHMARKS.md")
    sub.add_parser("parse", help="parameter parsing time per pair, 100 to 100,000 pairs, against its floor")
    p = _before_after(sub, "requests", "the request path before (--baseline) and after, against its floors", "small",
                      30, "requests per latency (default 30)")
    p.add_argument("--baseline", default="801bf68", help="the code before (a git ref; default: before issue 15)")
    p = _before_after(sub, "sync", "the sync task and populate before (--baseline) and after, and the plot", "full", 3,
                      "quiet runs and runs of the middle change size per variant (default 3)")
    p.add_argument("--baseline", default="ad1224b", help="the code before (a git ref; default: before issue 16)")
    p.add_argument("--freshness", type=int, default=4, metavar="N",
                   help="edits timed until served, with the sync task every minute under load (0: skip; default 4)")
    _before_after(sub, "odata", "the OData feed's 1000-row page next to the REST page and their floors", "full", 30,
                  "requests per latency (default 30)")
    p = sub.add_parser("replicas", help="a refresh storm on a private primary alone and with a streaming replica")
    p.add_argument("--size", choices=sorted(fixture.SIZES), default="small")
    p.add_argument("--repeat", type=int, default=3, help="storms per variant (default 3)")
    p.add_argument("--no-include", action="store_true", help="a trial: results to bench/work/ only")
    p.set_defaults(db="postgresql", url=None)
    args = parser.parse_args(argv)
    if args.command == "parse":
        from bench import parse

        print(parse.report(parse.measure()))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    size = fixture.SIZES[args.size]
    url = args.url or fixture.default_url(args.db, size.name)
    started = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {text}", flush=True)

    def record(kind: str, results: dict, md: str) -> bool:
        """Write a before/after command's results; False for a trial (--no-include), whose files
        go to bench/work/ and leave the recorded results alone."""
        stem = f"{time.strftime('%Y-%m-%d')}-{kind}-{args.db}-{size.name}"
        folder = fixture.WORK if args.no_include else run.RESULTS
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
        (folder / f"{stem}.md").write_text(md)
        print(md)
        say(f"results: {folder / stem}.json and .md")
        if not args.no_include:
            include(folder / f"{stem}.md", f"{kind}-{args.db}", size.name)
        return not args.no_include

    if args.command == "requests":
        from bench import requests

        record("requests", *requests.main(args.db, size, url, args.repeat, args.baseline, say))
        return 0
    if args.command == "odata":
        from bench import odata

        record("odata", *odata.main(args.db, size, url, args.repeat, say))
        return 0
    if args.command == "replicas":
        from bench import replicas

        record("replicas", *replicas.main(size, args.repeat, say))
        return 0
    if args.command == "sync":
        from bench import sync

        if record("sync", *sync.main(args.db, size, url, args.repeat, args.baseline, say, args.freshness)):
            say(f"plot: {sync.plot(args.db)}")
        return 0
    if args.rebuild:
        fixture.recreate(url)
    bench = run.Bench(args.db, size, url, args.repeat or size.repeats, args.soak or size.soak_seconds, say)
    results = bench.run()
    json_path, md_path = run.write(results)
    say(f"results: {json_path.relative_to(Path.cwd()) if json_path.is_relative_to(Path.cwd()) else json_path}")
    if not args.no_include:
        include(md_path, args.db, size.name)
        say(f"BENCHMARKS.md updated ({args.db}-{size.name})")
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
