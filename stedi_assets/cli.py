"""The ``stedi`` command: run the pipeline headless, write simulated landing data.

    stedi run        bring every table up to date (only what changed; --full-refresh: all), run their checks
    stedi simulate   write a simulated landing zone (into an empty folder only)
    stedi query SQL  run a read-only SQL query over the published tables (now or --as-of an earlier state)
    stedi history T  list the snapshots of table T (time, run id, rows)
    stedi maintain   expire old snapshots and delete unreferenced files of every table
    stedi erase EMAIL...  erase people everywhere the lakehouse holds them, and keep them out of later deliveries
    stedi recover-catalog  register the lakehouse's tables in the catalog again from their metadata files
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from stedi_assets.domain.schemas import FEEDS, PUBLISHED, TABLES

# The settings a command takes as options (declared with their option in
# settings.Settings). An option is an override passed to settings.read_settings
# as a value; the environment is never written.
_RUN_OPTIONS = ("landing_uri", "lakehouse_uri", "profile", "engine", "ml_join", "glue_database")


@dataclass
class TableSummary:
    rows: int | None = None
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (check, severity, detail)
    error: str | None = None
    up_to_date: bool = False


def _add_settings(parser: argparse.ArgumentParser, *fields: str) -> None:
    """An option for each setting of ``fields``, named and described as the settings model declares it."""
    from stedi_assets.settings import SETTING_OF_FIELD

    for name in fields:
        setting = SETTING_OF_FIELD[name]
        default = f" or {setting.default}" if setting.default not in ("", None) else ""
        parser.add_argument(
            setting.option, dest=name, metavar=setting.option.removeprefix("--").upper().replace("-", "_"),
            help=f"{setting.description.rstrip('.')} (default: ${setting.variable}{default})".replace("%", "%%"),
        )


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """The settings given as options: field name -> value."""
    from stedi_assets.settings import SETTING_OF_FIELD

    return {name: getattr(args, name) for name in SETTING_OF_FIELD if getattr(args, name, None) is not None}


def _landing_is_empty(lakehouse) -> bool:
    from stedi_assets.domain.schemas import FEEDS

    store = lakehouse.store_for(lakehouse.landing_uri)
    return not any(store.list_files(lakehouse.feed_uri(feed)) for feed in FEEDS)


def write_simulated_landing(lakehouse, landing_uri: str, customers: int, seed: int) -> int:
    """Write the simulator's feeds under ``landing_uri``; return how many files were written."""
    from stedi_assets.domain.simulate import simulate_landing
    from stedi_assets.lakehouse.storage import join_uri

    store = lakehouse.store_for(landing_uri)
    files = simulate_landing(customers=customers, seed=seed)
    for relative, data in files.items():
        store.write_bytes(join_uri(landing_uri, relative), data)
    return len(files)


def stedi_job(build: str, tables: Sequence[str] = (), overrides: dict[str, str] | None = None):
    """The job of the ``tables`` (default: every table) with the checks of their steps, as ``stedi run``
    executes it: built here from the environment and the command's ``overrides`` of its settings.
    ``build`` names one run's build (see ``run``); the job does not depend on it. The audit checks run
    on their own."""
    return _built_job(build, tuple(tables), tuple(sorted((overrides or {}).items())))


@functools.lru_cache(maxsize=4)
def _built_job(build: str, tables: tuple[str, ...], overrides: tuple[tuple[str, str], ...]):
    # Dagster asks for the job several times during a run: it is built once per build.
    from dagster import AssetKey, colored_console_logger

    from stedi_assets.orchestration.checks import check_specs
    from stedi_assets.orchestration.feeds import feed_key
    from stedi_assets.orchestration.progress import stedi_progress
    from stedi_assets.definitions import build_definitions
    from stedi_assets.domain.schemas import FEEDS

    job = build_definitions(dict(overrides)).resolve_job_def("stedi_job")
    if tables:
        # The feeds it ingests are observed first: each landing step records the version it read.
        feeds = {feed_key(feed) for feed in FEEDS if f"{feed}_landing" in tables}
        job = job.get_subset(
            asset_selection={AssetKey(name) for name in {*tables, *feeds}},
            asset_check_selection={spec.key for name in tables for spec in check_specs(name)},
        )
    # The command's own progress lines beside Dagster's console log (shown with --verbose).
    return job.with_logger_defs({"console": colored_console_logger, "stedi_progress": stedi_progress})


def run(args: argparse.Namespace) -> int:
    # Dagster is imported only once something is out of date: a run with nothing to do plans from the
    # catalog and the landing listing alone, with the zone graph as the domain declares it.
    from stedi_assets.domain.zone_graph import ZONE_INPUTS
    from stedi_assets.lakehouse.planning import out_of_date
    from stedi_assets.domain.simulate import DEFAULT_CUSTOMERS, DEFAULT_SEED
    from stedi_assets.lakehouse.storage import normalize_uri
    from stedi_assets.settings import ProfileName

    overrides = _overrides(args)
    settings, lakehouse = _configure(args)
    _check_catalog(lakehouse)
    # The embedded default: with no landing zone configured at all, an empty
    # default folder gets simulated data. A configured landing zone is never
    # written to; an empty one fails the landing steps, naming its URI.
    landing_uri = normalize_uri(lakehouse.landing_uri)
    if not settings.landing_configured and _landing_is_empty(lakehouse):
        count = write_simulated_landing(lakehouse, landing_uri, DEFAULT_CUSTOMERS, DEFAULT_SEED)
        print(f"The landing zone {landing_uri} is empty: wrote {count} files of simulated STEDI data there.")
        if not lakehouse.profile:
            overrides["profile"] = ProfileName.SIMULATED.value
    stale = out_of_date(lakehouse, ZONE_INPUTS, full_refresh=args.full_refresh)
    summaries = {name: TableSummary() for name in TABLES}
    for name in TABLES:
        if name not in stale.tables:
            summaries[name].rows, summaries[name].up_to_date = stale.rows.get(name), True
    if not stale.tables:
        print(_format_summary(summaries))
        print("OK: every table is up to date with the landing zone; nothing to run (--full-refresh rebuilds them).")
        return 0
    from dagster import DagsterInstance, build_reconstructable_job, execute_job

    from stedi_assets.orchestration.masking import mask_emails

    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    by_reason: dict[str, list[str]] = {}
    for name, reason in stale.reasons.items():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        print(mask_emails(f"out of date ({reason}): {', '.join(names)}"))
    # The summary below reports failures in one line each; Dagster's own log
    # (with stack traces) is there with --verbose.
    log_level = "INFO" if args.verbose else "CRITICAL"
    landing_config = {"config": {"full_refresh": args.full_refresh}}
    # execute_job (in this process: the job's executor is in-process) rather
    # than execute_in_process, which keeps every table it computed in memory
    # until the run ends, to hand them back as outputs: at 100x, the landing
    # and trusted tables held that way added 0.4 GB to the run's peak. Each
    # run's job has an address of its own (a random build name, never a
    # setting: the address is stored with the run), as Dagster keeps the last
    # job it built for an address: a later run in this process with other
    # settings would otherwise get the earlier run's job.
    job = build_reconstructable_job(
        __name__, "stedi_job",
        reconstructable_kwargs={"build": uuid.uuid4().hex, "tables": sorted(stale.tables), "overrides": overrides},
    )
    result = execute_job(
        job,
        instance=instance,
        raise_on_error=False,
        run_config={
            "loggers": {
                "console": {"config": {"log_level": log_level}},
                **({} if args.quiet else {"stedi_progress": {"config": {
                    "steps": sum(1 for t in stale.tables if not t.endswith("_quarantine")),
                    "terminal": sys.stdout.isatty(),
                }}}),
            },
            "ops": {f"{feed}_landing": landing_config for feed in FEEDS if f"{feed}_landing" in stale.tables},
        },
    )

    for event in result.get_asset_materialization_events():
        name = event.asset_key.path[-1]
        rows = event.materialization.metadata.get("dagster/row_count")
        summaries[name].rows = rows.value if rows is not None else None
    for evaluation in result.get_asset_check_evaluations():
        summary = summaries[evaluation.asset_key.path[-1]]
        if evaluation.passed:
            summary.passed.append(evaluation.check_name)
        else:
            detail = ", ".join(f"{k}={v.value}" for k, v in evaluation.metadata.items() if k != "hint")
            summary.failed.append((evaluation.check_name, evaluation.severity.value, detail))
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    for failure in failures:
        summaries[failure.step_key].error = _failure_message(failure)
    print(_format_summary(summaries))

    errors = [f for s in summaries.values() for f in s.failed if f[1] == "ERROR"]
    for failure in failures:
        if failure.step_key not in {name for name, s in summaries.items() if s.failed}:
            print(f"error: {failure.step_key}: {_failure_message(failure)}", file=sys.stderr)
    if errors or not result.success:
        what = f"{len(errors)} ERROR check(s) failed" if errors else f"{len(failures)} step(s) failed"
        print(f"FAILED: {what}", file=sys.stderr)
        return 1
    print("OK: every table published, no ERROR check failed.")
    return 0


def _check_catalog(lakehouse) -> None:
    """Stop before anything is written when the catalog cannot be used (e.g. it lost the lakehouse's tables):
    one line here rather than one per step."""
    from stedi_assets.lakehouse.catalog import TableNotPublishedError
    from stedi_assets.lakehouse.snapshots import holds_every_table

    if holds_every_table(lakehouse.catalog_settings()):
        return  # a local catalog holding every table has lost none: known without building it
    try:
        lakehouse.catalog(create=False)
    except TableNotPublishedError:
        pass  # a new local lakehouse: its first step creates the catalog


def _failure_message(event) -> str:
    error = event.event_specific_data.error
    # The innermost cause is the error raised by this package; its last line is the message.
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()
    # The message starts with the exception's qualified class name; the line says enough without it.
    message = re.sub(rf"^(?:\w+\.)*{re.escape(error.cls_name)}: ", "", message) if error.cls_name else message
    return message.splitlines()[-1]


def _format_summary(summaries: dict[str, TableSummary]) -> str:
    lines = [f"{'table':<26} {'rows':>12}  checks"]
    for name, summary in summaries.items():
        rows = f"{summary.rows:,}" if summary.rows is not None else "-"
        total = len(summary.passed) + len(summary.failed)
        if total:
            status = f"{len(summary.passed)}/{total} passed"
        elif summary.error:
            status = "failed"
        elif summary.up_to_date:
            status = "up to date"
        else:
            status = "published, no checks" if summary.rows is not None else "not run"
        if total and summary.rows is None:
            status += ", not published"
        lines.append(f"{name:<26} {rows:>12}  {status}")
        for check, severity, detail in summary.failed:
            lines.append(f"{'':<26} {'':>12}  {severity} {check}: {detail}")
    return "\n".join(lines)


def simulate(args: argparse.Namespace) -> int:
    from stedi_assets.lakehouse.storage import normalize_uri

    settings, lakehouse = _configure(args)
    # Simulated records must never mix with real ones: the simulator writes
    # only into an empty folder, given with --out or, when no landing zone is
    # configured, the default one.
    if args.out is None and settings.landing_configured:
        print(
            f"stedi: simulate: STEDI_LANDING_URI is set ({lakehouse.landing_uri}): simulated data is never written "
            "into a configured landing zone; give an empty folder with --out",
            file=sys.stderr,
        )
        return 2
    landing_uri = normalize_uri(args.out or lakehouse.landing_uri)
    held = lakehouse.store_for(landing_uri).list_files(landing_uri)
    if held:
        what = "--out" if args.out is not None else "the default landing zone"
        print(
            f"stedi: simulate: {what} {landing_uri} already holds {len(held):,} file(s): simulated data is written "
            "only into an empty folder",
            file=sys.stderr,
        )
        return 2
    count = write_simulated_landing(lakehouse, landing_uri, args.customers, args.seed)
    print(f"wrote {count} files of simulated STEDI data to {landing_uri}")
    return 0


def _configure(args: argparse.Namespace):
    """The validated settings and the lakehouse resource (EnvVars resolved), from the options and the environment.

    Raises ``SettingsError`` before anything is read or written.
    """
    from stedi_assets.lakehouse.storage import is_s3_uri, normalize_uri
    from stedi_assets.settings import SETTING_OF_FIELD, read_settings

    settings = read_settings(overrides=_overrides(args))
    if not any(is_s3_uri(uri) for uri in (settings.landing_uri, settings.lakehouse_uri)):
        # A local lakehouse needs no S3 connection: it is built without the Dagster resource (and
        # dagster-aws, boto3) that resolves one, with the same values: a default path made absolute.
        from stedi_assets.lakehouse.lakehouse import Lakehouse

        lakehouse = Lakehouse.from_settings(settings)
        for name in ("landing_uri", "lakehouse_uri"):
            if not settings.in_environment(SETTING_OF_FIELD[name].variable) and not settings.overridden(name):
                setattr(lakehouse, name, normalize_uri(getattr(lakehouse, name)))
        return settings, lakehouse

    from stedi_assets.orchestration.resources import lakehouse_for

    return settings, lakehouse_for(settings)


def query(args: argparse.Namespace) -> int:
    from stedi_assets.lakehouse.query import query_batches

    settings, lakehouse = _configure(args)
    max_rows = args.max_rows if args.max_rows is not None else (100 if args.format == "table" else -1)
    batches = query_batches(args.sql, lakehouse, memory_limit=settings.query_memory_limit, as_of=args.as_of)
    try:
        rows = _FirstRows(batches, max_rows)
        shown = _print_rows(rows, args.format)
    finally:
        batches.close()  # stops the query and closes the connection
    if rows.more:
        note = f"(first {shown:,} row{'s' if shown != 1 else ''} shown; more rows exist: raise --max-rows, -1 for all)"
        # For csv and json the note goes to stderr, so stdout stays one valid document.
        print(note, file=sys.stdout if args.format == "table" else sys.stderr)
    elif args.format == "table":
        print(f"({shown:,} row{'s' if shown != 1 else ''})")
    return 0


class _FirstRows:
    """The frames of ``batches`` up to ``max_rows`` rows in all (-1: all); ``more`` tells whether rows were left."""

    def __init__(self, batches, max_rows: int):
        self.batches, self.max_rows, self.more = batches, max_rows, False

    def __iter__(self):
        taken = 0
        for frame in self.batches:
            if 0 <= self.max_rows <= taken + frame.height:
                head = frame.head(self.max_rows - taken)
                # Rows are left if this frame had more, or another non-empty one follows.
                self.more = frame.height > head.height or any(f.height for f in self.batches)
                yield head
                return
            taken += frame.height
            yield frame


def _print_rows(frames, output_format: str) -> int:
    """Write the frames in ``output_format`` as they come; return how many rows were written."""
    import polars as pl

    written = 0
    if output_format == "csv":
        for index, frame in enumerate(frames):
            sys.stdout.write(frame.write_csv(include_header=index == 0))
            written += frame.height
    elif output_format == "json":
        # One JSON array, written as the rows come (nothing before the first batch, so an error prints alone).
        for frame in frames:
            text = frame.write_json()[1:-1]
            if text:
                sys.stdout.write(("," if written else "[") + text)
            written += frame.height
        sys.stdout.write("]\n" if written else "[]\n")
    else:
        # A table is laid out once its column widths are known: it holds the rows it shows.
        result = pl.concat(list(frames), how="vertical")
        written = result.height
        table_style = pl.Config(
            tbl_rows=max(result.height, 1),
            tbl_cols=-1,
            tbl_width_chars=10_000,
            fmt_str_lengths=200,
            tbl_hide_dataframe_shape=True,
            tbl_hide_column_data_types=True,
            tbl_hide_dtype_separator=True,
        )
        with table_style:
            print(result)
    return written


def history(args: argparse.Namespace) -> int:
    from stedi_assets.lakehouse.tables import history as snapshots

    if args.table not in PUBLISHED:
        print(f"error: unknown table {args.table!r}; one of: {', '.join(PUBLISHED)}", file=sys.stderr)
        return 2
    _, lakehouse = _configure(args)
    table = lakehouse.load_table(args.table)
    print(f"{lakehouse.table_identifier(args.table)} in {lakehouse.catalog_settings().describe()}")
    print(f"{'snapshot_id':<20}  {'committed_at (UTC)':<23}  {'operation':<9}  {'rows':>12}  run_id")
    for info in snapshots(table):
        marker = "  (current)" if info.current else ""
        when = info.committed_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        print(f"{info.snapshot_id:<20}  {when:<23}  {info.operation:<9}  {info.rows:>12,}  {info.run_id or '-'}{marker}")
        if info.added_columns:
            print(f"{'':<20}  added columns: {info.added_columns}")
        if args.upstream and info.upstream:
            for name, snapshot_id in sorted(info.upstream.items()):
                print(f"{'':<20}  computed from {name} snapshot {snapshot_id}")
    return 0


def maintain(args: argparse.Namespace) -> int:
    from stedi_assets.lakehouse.history import describe as describe_forgotten
    from stedi_assets.lakehouse.history import forget_withdrawn_everywhere
    from stedi_assets.lakehouse.maintenance import describe, maintain_lakehouse

    _, lakehouse = _configure(args)
    for forgotten in forget_withdrawn_everywhere(lakehouse):
        if forgotten.snapshots_expired:
            print(describe_forgotten(forgotten))
    # A line per table as soon as it is done: a large lakehouse takes a while.
    reports = maintain_lakehouse(lakehouse, on_table=lambda report: print(describe(report), flush=True))
    if not reports:
        print(f"no tables in {lakehouse.catalog_settings().describe()} yet")
    return 0


def erase(args: argparse.Namespace) -> int:
    from stedi_assets.lakehouse.erasure import ErasureError, describe, parse_emails
    from stedi_assets.lakehouse.erasure import erase as erase_people
    from stedi_assets.orchestration.masking import mask_email

    try:
        identities = parse_emails(args.emails)
    except ErasureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _, lakehouse = _configure(args)
    run_id = f"erase-{uuid.uuid4()}"
    print(f"erasing {len(identities)} person(s), run {run_id}")
    erasure = erase_people(lakehouse, identities, run_id, progress=lambda result: print(describe(result), flush=True))
    for identity, found in erasure.found.items():
        if not found:
            # Masked: the address typed is the operator's, but this output may be kept in a log.
            print(f"not found: {mask_email(identity)} (registered all the same: a later delivery of theirs is dropped)")
    print(
        f"OK: {len(identities)} person(s) and {erasure.devices_erased} device(s) erased and registered: "
        f"{erasure.rows_removed} row(s) removed, {erasure.files_rewritten} file(s) rewritten or deleted, "
        f"{erasure.snapshots_expired} snapshot(s) expired"
    )
    return 0


def recover_catalog(args: argparse.Namespace) -> int:
    from stedi_assets.lakehouse.catalog import build_catalog
    from stedi_assets.lakehouse.recovery import describe as describe_recovery
    from stedi_assets.lakehouse.recovery import recover_catalog as recover

    _, lakehouse = _configure(args)
    settings = lakehouse.catalog_settings()
    # Built without the check that refuses a catalog lacking the stored tables: registering them is the point.
    catalog = build_catalog(settings, create=True)
    results = recover(catalog, settings, lakehouse.store_for(settings.lakehouse_uri))
    for result in results:
        print(describe_recovery(result, settings))
    failed = [r.table for r in results if r.action == "failed"]
    changed = [r for r in results if r.action in ("registered", "re-pointed")]
    if not results:
        print(f"no tables stored under {settings.lakehouse_uri}: nothing to recover")
    if failed:
        print(f"FAILED: {', '.join(failed)} could not be recovered (no metadata file of theirs reads)", file=sys.stderr)
        return 1
    print(f"OK: catalog {settings.describe()} holds every table stored under {settings.lakehouse_uri} "
          f"({len(changed)} registered or re-pointed, {len(results) - len(changed)} kept)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from stedi_assets.domain.simulate import DEFAULT_CUSTOMERS, DEFAULT_SEED

    parser = argparse.ArgumentParser(prog="stedi", description="STEDI lakehouse")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="bring every table up to date and run its checks")
    _add_settings(run_parser, *_RUN_OPTIONS)
    run_parser.add_argument("-v", "--verbose", action="store_true", help="show Dagster's step log")
    run_parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the summary, not a line per step as it runs"
    )
    run_parser.add_argument(
        "--full-refresh", action="store_true",
        help="read every landing file again and rebuild every table (default: only what changed)",
    )
    run_parser.set_defaults(handler=run)
    simulate_parser = commands.add_parser("simulate", help="write a simulated landing zone")
    simulate_parser.add_argument(
        "--out",
        help="an empty folder (local or s3://) to write to; default: ./data/landing when it is empty and no "
        "landing zone is configured (STEDI_LANDING_URI)",
    )
    simulate_parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    simulate_parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    simulate_parser.set_defaults(handler=simulate)
    query_parser = commands.add_parser("query", help="run a read-only SQL query over the published tables")
    query_parser.add_argument(
        "sql", help='one SELECT/WITH/DESCRIBE/SHOW/EXPLAIN statement, e.g. "SELECT COUNT(*) FROM customer_trusted"'
    )
    query_parser.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)"
    )
    query_parser.add_argument(
        "--max-rows",
        dest="max_rows",
        type=int,
        default=None,
        help="stop after this many rows (-1: all; default: 100 in table format, all in csv and json)",
    )
    query_parser.add_argument(
        "--as-of", dest="as_of",
        help="run against an earlier state: a snapshot id (stedi history) or a time, e.g. 2026-11-28T08:15:00Z (UTC)",
    )
    _add_settings(query_parser, "lakehouse_uri")
    query_parser.set_defaults(handler=query)
    history_parser = commands.add_parser("history", help="list the snapshots of a table (time, run id, rows)")
    history_parser.add_argument("table", help="table name, e.g. machine_learning_curated")
    history_parser.add_argument(
        "--upstream", action="store_true", help="also list the upstream snapshots each one was computed from"
    )
    _add_settings(history_parser, "lakehouse_uri")
    history_parser.set_defaults(handler=history)
    maintain_parser = commands.add_parser(
        "maintain", help="expire old snapshots and delete unreferenced files (as the lakehouse_maintenance job)"
    )
    _add_settings(maintain_parser, "lakehouse_uri")
    maintain_parser.set_defaults(handler=maintain)
    erase_parser = commands.add_parser(
        "erase", help="erase people (by email) from every table, snapshot, delivery record and landing file, "
        "and register them so that a later delivery of theirs is dropped",
    )
    erase_parser.add_argument("emails", nargs="+", metavar="EMAIL", help="email address of a person to erase")
    _add_settings(erase_parser, "landing_uri", "lakehouse_uri", "glue_database")
    erase_parser.set_defaults(handler=erase)
    recover_parser = commands.add_parser(
        "recover-catalog",
        help="register the lakehouse's tables in the catalog again from their newest readable metadata files "
        "(a lost catalog; a table whose metadata file is missing or corrupt)",
    )
    _add_settings(recover_parser, "lakehouse_uri", "glue_database")
    recover_parser.set_defaults(handler=recover_catalog)
    args = parser.parse_args(argv)
    # Imported after parsing: `stedi --help` works whatever the settings hold.
    from stedi_assets.settings import SettingsError

    try:
        return args.handler(args)
    except SettingsError as error:
        print(f"stedi: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # one readable line, not a stack trace
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
