"""What an engine tells a ``ReadProgress`` while it reads landing files: files and bytes read, of all.

The Polars engine reports each file as it is parsed (several batches of
files, read by several threads, one file too large to read); the Spark
engine reports once, when its executors have read everything. How
``stedi run`` draws these reports is covered by ``stedi_assets_tests/test_progress.py``.
"""

from __future__ import annotations

import json
import threading

import pytest

from stedi_assets.domain.schemas import FEED_SCHEMAS
from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine
from stedi_assets.lakehouse.storage import LocalStore

T0 = 1_655_564_444_000


def _landing_files(tmp_path, count: int, oversized: bool) -> list[str]:
    files = []
    for number in range(count):
        path = tmp_path / f"part-{number:02d}.json"
        lines = [json.dumps({"user": "a@test.com", "timestamp": T0 + number * 100 + i, "x": 1.0, "y": 0.5, "z": 0.0})
                 for i in range(10 + number)]
        path.write_text("\n".join(lines) + "\n")
        files.append(str(path))
    if oversized:
        # Over a 1 MB bound: quarantined from its size, never read, and still counted.
        path = tmp_path / "part-big.json"
        path.write_text((json.dumps({"user": "a@test.com", "timestamp": T0, "x": 1.0}) + "\n") * 25_000)
        files.append(str(path))
    return files


class _Reports:
    """Every report, with the thread that made it."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        self.threads: set[str] = set()

    def __call__(self, files_read: int, files_total: int, bytes_read: int, bytes_total: int) -> None:
        self.calls.append((files_read, files_total, bytes_read, bytes_total))
        self.threads.add(threading.current_thread().name)


@pytest.mark.parametrize("listed", [True, False], ids=["sizes as listed", "sizes looked up"])
def test_polars_reports_each_file_and_its_bytes_as_it_reads(tmp_path, listed):
    files = _landing_files(tmp_path, 40, oversized=True)  # three batches of 16 files
    sizes = {f: LocalStore().size(f) for f in files}
    reports = _Reports()

    read = PolarsEngine(max_file_mb=1).read_landing(
        FEED_SCHEMAS["accelerometer"], files, LocalStore(), sizes=sizes if listed else None, progress=reports,
    )

    total = sum(sizes.values())
    # One report before any file, then one per file, in order, ending at the totals.
    assert reports.calls[0] == (0, len(files), 0, total)
    assert [c[0] for c in reports.calls] == list(range(len(files) + 1))
    assert all(c[1] == len(files) and c[3] == total for c in reports.calls)
    assert all(later[2] > earlier[2] for earlier, later in zip(reports.calls, reports.calls[1:]))
    assert reports.calls[-1] == (len(files), len(files), total, total)
    # Each step adds exactly one file's size.
    steps = sorted(later[2] - earlier[2] for earlier, later in zip(reports.calls, reports.calls[1:]))
    assert steps == sorted(sizes.values())
    assert reports.threads - {threading.current_thread().name}  # from the reading threads
    assert read.quarantined == 1 and read.records_read == 1 + sum(10 + n for n in range(40))


def test_polars_reads_alike_with_and_without_a_progress(tmp_path):
    files = _landing_files(tmp_path, 3, oversized=False)
    engine = PolarsEngine()
    quiet = engine.read_landing(FEED_SCHEMAS["accelerometer"], files, LocalStore())
    told = engine.read_landing(FEED_SCHEMAS["accelerometer"], files, LocalStore(), progress=_Reports())
    assert (quiet.records_read, quiet.quarantined, quiet.distinct_by_file) == (
        told.records_read, told.quarantined, told.distinct_by_file
    )
    assert quiet.records.collect().to_native().equals(told.records.collect().to_native())


@pytest.mark.spark
def test_spark_reports_once_when_its_executors_have_read_every_file(spark, tmp_path):
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    files = _landing_files(tmp_path, 4, oversized=True)
    total = sum(LocalStore().size(f) for f in files)
    reports = _Reports()

    read = SparkEngine(max_file_mb=1).read_landing(FEED_SCHEMAS["accelerometer"], files, LocalStore(), progress=reports)

    assert reports.calls == [(0, 5, 0, total), (5, 5, total, total)]
    assert read.quarantined == 1
