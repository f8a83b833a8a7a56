"""Time the Polars landing reader on the real STEDI data repeated N times.

    python benchmarks/landing_parse.py [--times 10] [--landing PATH]

Builds the copy in a temporary folder (each feed's files concatenated N
times into one file per feed), then reads each feed as the landing assets do:
parse, validate, quarantine. Prints the seconds per feed and in total.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from stedi_assets.lakehouse.engines.polars_landing import read_feed
from stedi_assets.domain.schemas import FEED_SCHEMAS
from stedi_assets_tests.conftest import reference_landing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=10)
    parser.add_argument("--landing", type=Path, default=reference_landing())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        total_bytes, total_seconds = 0, 0.0
        for feed, schema in FEED_SCHEMAS.items():
            sources = b"".join(p.read_bytes() for p in sorted((args.landing / feed).glob("*.json")))
            copy = Path(folder) / f"{feed}.json"
            copy.write_bytes(sources * args.times)
            data = copy.read_bytes()
            started = time.perf_counter()
            result = read_feed(schema, [(str(copy), data)])
            seconds = time.perf_counter() - started
            total_bytes += len(data)
            total_seconds += seconds
            print(f"{feed:<14} {len(data) / 1e6:8.1f} MB {result.records_read:>10,} records "
                  f"{result.quarantine.height:>6} quarantined {seconds:6.2f} s")
        print(f"{'total':<14} {total_bytes / 1e6:8.1f} MB {total_seconds:39.2f} s")


if __name__ == "__main__":
    main()
