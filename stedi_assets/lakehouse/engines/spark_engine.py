"""The Spark engine: the same narwhals rules, computed by Spark.

Spark reads the landing JSON, computes every table and writes its Parquet
data files itself (pyiceberg then commits them to the table's Iceberg
metadata), so the data never has to fit in the Python process; narwhals
wraps the pyspark DataFrames, so rules.py and checks.py run unchanged.

The session is started on first use and shared by every engine in the
process: a classic session (its own driver JVM, ``local[*]`` or a cluster's
master) or a Spark Connect client session (``remote``, no JVM here). Both run
the same code: the engine uses only what the DataFrame API of both offers
(no SparkContext, RDDs or accumulators); what is kept of the classic
session's JVM (its death, reported in one line) is used only where there is
one. Importing this module needs the ``spark`` extra (pyspark and its
Connect client); a classic session needs Java 17+.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import narwhals as nw

from stedi_assets.lakehouse.engines import EngineError, LandingRead, ReadProgress, ReadTally, RecordsFolder
from stedi_assets.domain.evolution import merge_kinds
from stedi_assets.domain.schemas import DELIVERED_FROM, QUARANTINE_SCHEMAS, TableSchema, delivered_records_schema
from stedi_assets.settings import DEFAULT_MAX_FILE_MB
from stedi_assets.lakehouse.storage import Store, is_s3_uri, local_path
from stedi_assets.domain.validation import LINE, MIB, REASON, SOURCE, file_too_large

try:
    from pyspark import StorageLevel
    from pyspark.errors import PySparkException
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from stedi_assets.lakehouse.engines import spark_internals
except ModuleNotFoundError as missing:  # pragma: no cover - depends on the installation
    raise EngineError(
        f"the Spark engine needs the 'spark' extra ({missing.name} is not installed): pip install 'stedi_assets[spark]'"
    ) from None

JAVA_MAJOR_REQUIRED = 17
LOG_CONFIG = Path(__file__).with_name("spark-log4j2.properties")

SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "bigint": T.LongType(),
    "double": T.DoubleType(),
    "boolean": T.BooleanType(),
}

_session_lock = threading.Lock()
_session: SparkSession | None = None
_settings: dict[str, str] | None = None
"""The settings the session was started with."""
_remote: str = ""
"""The Spark Connect URL of the session, or empty for a classic session (with its JVM in this process)."""


# -- URIs and schemas ------------------------------------------------------------


def spark_uri(uri: str) -> str:
    """The URI Spark's file systems understand for a store URI.

    Local paths become ``file://`` URIs, so a cluster whose default file
    system is HDFS still reads the local folder. ``s3://`` becomes ``s3a://``,
    Hadoop's S3 connector (hadoop-aws must be on the cluster's class path).
    """
    if is_s3_uri(uri):
        return "s3a://" + uri.split("://", 1)[1]
    # Not Path.as_uri(): Hadoop's Path takes the string as it is and does not
    # undo percent-escapes, so a name with a space must stay as it is.
    return "file://" + str(local_path(uri).expanduser().resolve())


def spark_schema(schema: TableSchema) -> T.StructType:
    """The Spark struct of a declared table schema."""
    return T.StructType([T.StructField(c.name, SPARK_TYPES[c.type], nullable=True) for c in schema.columns])


# -- session -----------------------------------------------------------------------


def java_executable(environ: Mapping[str, str] | None = None) -> str:
    """The ``java`` Spark's launcher will run, checked to be Java 17 or newer."""
    environ = os.environ if environ is None else environ
    # Spark's launcher prefers $JAVA_HOME/bin/java and falls back to the PATH.
    if environ.get("JAVA_HOME"):
        java = str(Path(environ["JAVA_HOME"]) / "bin" / "java")
        if not os.access(java, os.X_OK):
            java = None
    else:
        java = shutil.which("java", path=environ.get("PATH", ""))
    if java is None:
        raise EngineError(
            f"the Spark engine needs Java {JAVA_MAJOR_REQUIRED}+ ('java' not found on PATH / JAVA_HOME)"
        )
    try:
        banner = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.SubprocessError) as error:
        raise EngineError(f"the Spark engine needs Java {JAVA_MAJOR_REQUIRED}+ ({java} does not run: {error})") from None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    if found is None:
        raise EngineError(f"the Spark engine needs Java {JAVA_MAJOR_REQUIRED}+ (cannot tell the version of {java})")
    major = int(found.group(1))
    if major == 1 and found.group(2):  # Java 8 and older call themselves 1.x
        major = int(found.group(2))
    if major < JAVA_MAJOR_REQUIRED:
        raise EngineError(f"the Spark engine needs Java {JAVA_MAJOR_REQUIRED}+ ({java} is Java {major})")
    return java


# In local mode the driver JVM is the whole cluster: its heap holds every
# task's memory as well as the cached blocks. Spark's default of 1 GiB runs out
# long before one machine does, so without a spark.driver.memory of the user's
# the heap is sized from the machine's memory: a quarter of it, at least
# Spark's default and at most 8 GiB (the rest stays for the Python workers,
# the page cache and other processes).
DRIVER_MEMORY_SHARE = 0.25
DRIVER_MEMORY_MIN_MB = 1024
DRIVER_MEMORY_MAX_MB = 8192


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def local_driver_memory(memory_bytes: int | None) -> str:
    """The local driver's heap for a machine with ``memory_bytes`` of memory, as a Spark size (``6144m``)."""
    if not memory_bytes:
        return f"{DRIVER_MEMORY_MIN_MB}m"
    share_mb = int(memory_bytes * DRIVER_MEMORY_SHARE) // 2**20
    return f"{min(max(share_mb, DRIVER_MEMORY_MIN_MB), DRIVER_MEMORY_MAX_MB)}m"


def session_settings(master: str, conf: Mapping[str, str], memory_bytes: int | None = None) -> dict[str, str]:
    """Spark settings for a session: quiet local defaults, then everything in ``conf``.

    ``memory_bytes`` is the machine's memory (read from the system when not given).
    """
    settings = {
        "spark.master": master,
        "spark.app.name": "stedi",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}",
    }
    if is_local(master):
        # The default of 200 shuffle partitions makes hundreds of tiny tasks on
        # one machine; two per core keeps both cores busy.
        settings["spark.sql.shuffle.partitions"] = str(2 * (os.cpu_count() or 1))
        settings["spark.driver.memory"] = local_driver_memory(
            machine_memory_bytes() if memory_bytes is None else memory_bytes
        )
    settings.update(conf)
    if "spark.driver.extraJavaOptions" in conf:
        # Keep the quiet logging unless the given options choose their own.
        options = conf["spark.driver.extraJavaOptions"]
        if "log4j2.configurationFile" not in options:
            settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()} {options}"
    return settings


def is_local(master: str) -> bool:
    """Whether ``master`` runs everything in the driver's JVM (``local``, ``local[N]``)."""
    return master.startswith("local") and not master.startswith("local-cluster")


def _stopped(session: SparkSession) -> bool:
    """Whether ``session`` was stopped (a Connect session says so itself; a classic one by its context)."""
    if _remote:
        return session.is_stopped
    return spark_internals.context_stopped(session.sparkContext)


def spark_session(master: str = "local[*]", conf: Mapping[str, str] | None = None, remote: str = "") -> SparkSession:
    """The process's Spark session, started on first use: on ``master``, or a Spark Connect
    client session of the server at ``remote`` (``sc://host:port``) when given.

    Every engine in the process shares it: starting a JVM takes seconds. The
    settings of the first call win; Spark cannot change most of them later.
    Once its JVM has died (out of memory, killed), every use fails with the
    one line that says why, rather than with connection errors.
    """
    global _session, _settings, _remote
    with _session_lock:
        if _session is not None:
            failure = dead_jvm_message()
            if failure is not None:
                raise EngineError(failure)
            if not _stopped(_session):
                return _session
        if remote:
            _session, _settings, _remote = _connect_session(remote, conf or {}), dict(conf or {}), remote
            return _session
        java_executable()
        settings = session_settings(master, conf or {})
        try:
            session = SparkSession.builder.config(map=settings).getOrCreate()
        except PySparkException as error:
            raise EngineError(f"Spark did not start with master {master!r}: {_first_line(error)}") from None
        # py4j logs every failed call to a JVM that is gone, with a stack
        # trace, before the error reaches the engine; spark_errors turns
        # those errors into one line that says what happened.
        for name in ("py4j.java_gateway", "py4j.clientserver"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if _quiet_py4j not in logging.getLogger().filters:
            logging.getLogger().addFilter(_quiet_py4j)  # py4j logs this one on the root logger
        _quiet_accumulator_server(session)
        python = settings.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON")
        if python is None and is_local(master):
            # Python workers (the landing reader runs in them) start "python3"
            # from the PATH by default; locally they run this interpreter, so
            # they import the same installed packages as the driver.
            python = sys.executable
        if python is not None:
            # The classic driver takes the workers' Python from PYSPARK_PYTHON only; a
            # spark.pyspark.python of the settings names the cluster nodes' Python.
            session.sparkContext.pythonExec = python
        _session, _settings, _remote = session, settings, ""
        return session


def _connect_session(remote: str, conf: Mapping[str, str]) -> SparkSession:
    """A Spark Connect client session of the server at ``remote``, checked to answer.

    The server's own settings (its master, memory, the workers' Python) are
    the server's; ``conf`` can only set what a session may change at run time.
    """
    try:
        session = SparkSession.builder.remote(remote).config(map=dict(conf)).getOrCreate()
        session.version  # the first call to the server: fails here when nothing answers
    except ImportError as missing:
        raise EngineError(
            f"the Spark engine needs pyspark's Connect client for {remote} ({_first_line(missing)}): "
            "pip install 'stedi_assets[spark]'"
        ) from None
    except Exception as error:
        raise EngineError(f"Spark Connect server {remote} did not answer: {_first_line(error)}") from None
    return session


def _quiet_py4j(record: logging.LogRecord) -> bool:
    """False for py4j's report of a command the JVM did not answer (it logs it on the root logger)."""
    return not (record.msg == "Exception while sending command." and "py4j" in record.pathname)


def _quiet_accumulator_server(session: SparkSession) -> None:
    """Let pyspark's accumulator server drop a connection that the JVM closed (it dies with the JVM) silently.

    Python's socketserver prints the stack trace of a connection's EOFError
    to stderr; the engine reports the JVM's death itself, in one line.
    """
    server = spark_internals.accumulator_server(session.sparkContext)
    if server is None:
        return
    report = server.handle_error

    def handle_error(request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (EOFError, ConnectionError)):
            report(request, client_address)

    server.handle_error = handle_error


def stop_spark_session() -> None:
    """Stop the shared session (its JVM); the next use starts a new one."""
    global _session, _remote
    with _session_lock:
        if _session is not None:
            if _remote or dead_jvm_message() is None:
                _session.stop()
            else:
                spark_internals.forget_dead_jvm()
            _session, _remote = None, ""


# -- a JVM out of memory -------------------------------------------------------------
#
# A task that runs out of heap in local mode takes the whole driver JVM with
# it (Spark exits with code 52 on an OutOfMemoryError), and every call into it
# then fails with py4j's connection errors. The engine tells that apart and
# says it in one line that names the setting to raise.

_OOM_EXIT_CODE = 52
"""Spark's exit code for an OutOfMemoryError (SparkExitCode.OOM)."""


def _jvm_exit_code() -> int | None:
    """The exit code of the JVM this process started, or None while it runs (or when it was not started here)."""
    process = spark_internals.jvm_process()
    return None if process is None else process.poll()


def _memory_setting(master: str) -> tuple[str, str]:
    """The setting to raise when Spark runs out of memory, and its value now (Spark's default when unset).

    Locally the tasks run in the driver's JVM: its heap. On a cluster, or
    through Spark Connect, they run in the executors.
    """
    setting = "spark.driver.memory" if is_local(master) and not _remote else "spark.executor.memory"
    return setting, (_settings or {}).get(setting, "1g")


def _raised(size: str) -> str:
    """A Spark size doubled: ``6144m`` -> ``12288m``, ``2g`` -> ``4g``."""
    found = re.fullmatch(r"(\d+)([a-zA-Z]*)", size.strip())
    return f"{2 * int(found.group(1))}{found.group(2)}" if found else size


def out_of_memory_message(where: str, master: str = "local[*]") -> str:
    setting, value = _memory_setting(master)
    return (
        f"Spark ran out of memory ({where}, {setting}={value}): raise {setting}, "
        f"e.g. STEDI_SPARK_CONF={setting}={_raised(value)}"
    )


def dead_jvm_message() -> str | None:
    """One line saying why the Spark JVM is gone, or None while it runs."""
    code = _jvm_exit_code()
    if code is None:
        return None
    if code == _OOM_EXIT_CODE:
        return out_of_memory_message("the driver JVM exited with java.lang.OutOfMemoryError")
    if code in (-9, 137):
        # Killed from outside, most often by the kernel when the machine's memory ran out.
        return out_of_memory_message("the driver JVM was killed (SIGKILL), as when the machine runs out of memory")
    return f"the Spark JVM exited with code {code}; its log above says why"


JVM_EXIT_WAIT_SECONDS = 30.0


def _lost_the_jvm(error: BaseException) -> bool:
    """Whether ``error`` comes from a JVM that is going away (rather than from a JVM answering with an error)."""
    from py4j.protocol import Py4JError, Py4JJavaError, Py4JNetworkError

    if isinstance(error, (ConnectionError, Py4JNetworkError)):
        return True
    if isinstance(error, Py4JError) and not isinstance(error, Py4JJavaError):
        return True
    if _remote:
        return False  # no JVM of this process: the server answers with its errors
    # A JVM on its way out first stops its SparkContext, which cancels the
    # running job with an ordinary error ("SparkContext was shut down").
    session = _session
    if session is None or spark_internals.context_stopped(session.sparkContext):
        return False  # no context, or one stopped from Python: nothing is going away
    try:
        return spark_internals.jvm_context_stopped(session.sparkContext)
    except Exception:
        return True


def _wait_for_jvm_exit(seconds: float) -> None:
    process = spark_internals.jvm_process()
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=seconds)


_OUT_OF_MEMORY = re.compile(r"[\w.]*OutOfMemory(?:Error|Exception)(?:: [^\n]*)?")
"""The JVM's heap (java.lang.OutOfMemoryError), Spark's execution memory
(SparkOutOfMemoryError) or Arrow's direct buffers (OutOfMemoryException),
which are bounded by the heap's size too."""


def _out_of_memory(error: BaseException) -> str | None:
    """The out-of-memory error named in ``error``'s message (``java.lang.OutOfMemoryError: Java heap space``), or None."""
    try:
        text = str(error)
    except Exception:  # a Py4JJavaError whose JVM is gone cannot say what it was
        return None
    found = _OUT_OF_MEMORY.search(text)
    return found.group(0).strip() if found else None


@contextlib.contextmanager
def spark_errors(master: str = "local[*]") -> Iterator[None]:
    """Errors of a dead JVM or of a JVM out of heap, as one line (EngineError); other errors as they are."""
    try:
        yield
    except EngineError:
        raise
    except Exception as error:
        if _lost_the_jvm(error):
            # The connection broke first; the JVM may still be running its shutdown hooks.
            _wait_for_jvm_exit(JVM_EXIT_WAIT_SECONDS)
        failure = dead_jvm_message()
        oom = None if failure is not None else _out_of_memory(error)
        if oom is not None:
            failure = out_of_memory_message(oom if is_local(master) and not _remote else f"{oom} on the cluster", master)
        if failure is None:
            failure = _missing_module_message(error)
        if failure is None:
            raise
        raise EngineError(failure) from None


_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def _missing_module_message(error: BaseException) -> str | None:
    """One line for a Python worker that could not import a module (the package is missing on a node), or None."""
    try:
        text = str(error)
    except Exception:
        return None
    found = _MISSING_MODULE.search(text)
    if found is None:
        return None
    return (
        f"Spark's Python workers cannot import {found.group(1)} (ModuleNotFoundError): install stedi_assets with its "
        "'spark' extra into the Python of every node of the cluster (the one spark.pyspark.python or "
        "PYSPARK_PYTHON names)"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- landing JSON ------------------------------------------------------------------
#
# Spark reads each landing file's bytes (the binaryFile source: compressed
# files as they are) and its Python workers read them with the package's
# landing reader, the Polars engine's (stedi_assets.lakehouse.engines.polars_landing):
# the reference reader of stedi_assets.domain.validation, with its fast path where
# that is certain to give the reference's answer (test_landing_differential
# holds both engines to the reference, record by record). So the two engines
# keep and quarantine exactly the same records, one bad record costs only
# itself, and JSON-array files are read too.
#
# The workers stream: each task reads a few files at a time and hands Spark
# Arrow batches of typed records, quarantined records and one summary row
# per group of files (records read, quarantined, unknown fields), so no
# Python object of a whole file's records ever goes through the JVM. The
# workers need the stedi_assets package (installed on a cluster's nodes, as
# any Python UDF's code is).

_RAW_TEXT = "raw_text"
_RECORDS_READ = "__records_read"
_QUARANTINED = "__quarantined"
_UNKNOWN_FIELDS = "__unknown_fields"
_FIELD_KINDS = "__field_kinds"
_READ_ID = "__read_id"
_SCHEME = re.compile("^[a-z0-9]+:(//[^/]*)?")
_FILES_PER_READ = 8
"""Files a worker reads before handing their records on: few enough to bound
its memory, enough for the reader's per-call cost to matter little."""
_ROWS_PER_BATCH = 100_000


def landing_layout(schema: TableSchema) -> T.StructType:
    """The rows of a landing read: kept records, quarantined records and summary rows, told apart by
    their reason (quarantined) and their records-read count (summary)."""
    return T.StructType([
        T.StructField(SOURCE, T.StringType()), T.StructField(LINE, T.LongType()),
        T.StructField(REASON, T.StringType()), T.StructField(_RAW_TEXT, T.StringType()),
        *[T.StructField(c.name, SPARK_TYPES[c.type], nullable=True) for c in schema.columns],
        T.StructField(_RECORDS_READ, T.LongType()), T.StructField(_QUARANTINED, T.LongType()),
        T.StructField(_UNKNOWN_FIELDS, T.StringType()), T.StructField(_FIELD_KINDS, T.StringType()),
        T.StructField(_READ_ID, T.StringType()),
    ])


def _file_reads(max_file_mb: int, schema: TableSchema, files: Sequence[str]):
    """A mapInArrow function over binaryFile batches (path, content, read id): the files' landing rows as Arrow batches.

    Spark names a file ``file:/path`` or ``s3a://bucket/key``; files are told
    apart by their path (the part after the scheme and bucket), and each
    record names its file by the store's URI. Each summary row carries the
    read id of the files it sums up.
    """
    store_uris = {_SCHEME.sub("", spark_uri(uri)): uri for uri in files}
    layout = landing_layout(schema)

    def read(batches):
        import json

        import polars as pl
        from pyspark.sql.pandas.types import to_arrow_schema

        from stedi_assets.lakehouse.engines.polars_landing import read_feed

        arrow_schema = to_arrow_schema(layout)
        polars_types = {
            T.StringType(): pl.String, T.LongType(): pl.Int64, T.DoubleType(): pl.Float64, T.BooleanType(): pl.Boolean,
        }
        nulls = {f.name: pl.lit(None, dtype=polars_types[f.dataType]).alias(f.name) for f in layout}

        def rows(frame: pl.DataFrame) -> pl.DataFrame:
            """``frame`` in the layout's columns: those it lacks are null."""
            return frame.select([pl.col(n) if n in frame.columns else nulls[n] for n in layout.names])

        for batch in batches:
            paths = batch.column("path").to_pylist()
            contents = batch.column("content")
            read_ids = batch.column(_READ_ID)
            for start in range(0, len(paths), _FILES_PER_READ):
                group = [
                    (store_uris.get(_SCHEME.sub("", paths[i]), paths[i]), contents[i].as_py())
                    for i in range(start, min(start + _FILES_PER_READ, len(paths)))
                ]
                feed = read_feed(schema, group, max_file_mb)
                del group
                summary = pl.DataFrame({
                    _RECORDS_READ: [feed.records_read], _QUARANTINED: [feed.quarantine.height],
                    _UNKNOWN_FIELDS: [json.dumps(feed.unknown_fields)], _FIELD_KINDS: [json.dumps(feed.field_kinds)],
                    _READ_ID: [read_ids[start].as_py()],
                })
                quarantine = feed.quarantine.rename({
                    "source_file": SOURCE, "line": LINE, "reason": REASON, "raw_text": _RAW_TEXT,
                })
                records = feed.records.rename({DELIVERED_FROM: SOURCE})
                for frame in (rows(records), rows(quarantine), rows(summary)):
                    table = frame.to_arrow().cast(arrow_schema)
                    yield from table.to_batches(max_chunksize=_ROWS_PER_BATCH)

    return read


class SparkEngine:
    """Computes the tables with Spark (``local[*]`` here, a cluster given by ``master``, or a Spark Connect
    server given by ``remote``)."""

    name = "spark"
    slices_landing = False

    def __init__(
        self, master: str = "local[*]", conf: Mapping[str, str] | None = None,
        max_file_mb: int = DEFAULT_MAX_FILE_MB, remote: str = "",
    ) -> None:
        self.master = master
        self.remote = remote
        self.conf = dict(conf or {})
        self.max_file_mb = max_file_mb
        self._landing_records: list[DataFrame] = []
        self._held_already: list[DataFrame] = []
        self._started_session = False

    @property
    def session(self) -> SparkSession:
        if _session is None:
            # This engine starts the process's session: closing the engine stops it.
            self._started_session = True
        return spark_session(self.master, self.conf, self.remote)

    def close(self) -> None:
        """Stop the Spark session if this engine started it; one that was running before is left running."""
        if self._started_session:
            stop_spark_session()
            self._started_session = False

    def read_landing(
        self, feed: TableSchema, files: Sequence[str], store: Store, records_to: RecordsFolder | None = None,
        sizes: Mapping[str, int] | None = None, progress: ReadProgress | None = None,
    ) -> LandingRead:
        # The records stay in Spark, cached; the caller writes them once made distinct.
        # A file over the bound is quarantined from its size here, on the driver: Spark's binaryFile
        # source reads a file whole, and it must never hold one that large.
        limit = self.max_file_mb * MIB
        sizes = {f: sizes[f] if sizes and f in sizes else store.size(f) for f in files}
        oversized = [f for f in files if sizes[f] > limit]
        # The executors read the files: the driver sees them read all at once, when the read's summary is in.
        tally = ReadTally(progress, files, sizes)
        with self.errors():
            read = self._read_landing(feed, [f for f in files if f not in oversized]) if len(oversized) < len(files) else None
            if oversized:
                read = self._with_unread(feed, files, read, oversized)
        tally.read_all()
        return read

    def _with_unread(
        self, feed: TableSchema, files: Sequence[str], read: LandingRead | None, oversized: Sequence[str]
    ) -> LandingRead:
        """``read`` with a quarantined record for each file of ``oversized``, which was not read."""
        quarantine_schema = QUARANTINE_SCHEMAS[feed.name.removesuffix("_landing")]
        rows = self.session.createDataFrame(
            [(uri, 0, file_too_large(self.max_file_mb), "") for uri in oversized], spark_schema(quarantine_schema)
        )
        if read is None:
            records_schema = spark_schema(delivered_records_schema(feed.name.removesuffix("_landing"), feed))
            records = nw.from_native(self.session.createDataFrame([], records_schema).limit(0))
            return LandingRead(
                records=records, records_read=len(oversized), files=tuple(files), quarantine=nw.from_native(rows),
                quarantined=len(oversized),
            )
        held = read.quarantine.to_native()
        self._held_already = [frame for frame in self._held_already if frame is not held]
        quarantine = held.unionByName(rows) if read.quarantined else rows
        return dataclasses.replace(
            read,
            records_read=read.records_read + len(oversized),
            files=tuple(files),
            quarantine=nw.from_native(quarantine),
            quarantined=(read.quarantined or 0) + len(oversized),
        )

    def _read_landing(self, feed: TableSchema, files: Sequence[str]) -> LandingRead:
        # Each read is its own plan: Spark reuses cached data for any plan equal to a cached one, and a
        # read of the same paths after the files changed must not match an earlier read's cache (one a
        # failed step left behind, or one not yet released). The read's id is a literal column of the
        # plan, which Spark compares by value; the function hands it back in each summary row.
        read_id = uuid.uuid4().hex
        contents = self.session.read.format("binaryFile").load([spark_uri(f) for f in files]).select(
            "path", "content", F.lit(read_id).alias(_READ_ID)
        )
        rows = contents.mapInArrow(_file_reads(self.max_file_mb, feed, files), landing_layout(feed))
        # Cached, the files are read once: the summaries below compute the
        # cache, and the quarantine and the landing table are read from it.
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        self._landing_records.append(rows)
        summaries = rows.filter(F.col(_RECORDS_READ).isNotNull()).select(
            F.sum(_RECORDS_READ), F.sum(_QUARANTINED), F.collect_list(_UNKNOWN_FIELDS), F.collect_set(_READ_ID),
            F.collect_list(_FIELD_KINDS),
        ).first()
        records_read, quarantined, unknown_lists = summaries[0] or 0, summaries[1] or 0, summaries[2] or []
        if set(summaries[3] or []) - {read_id}:
            raise EngineError("Spark answered a read of landing files with the rows it had cached for another read")
        unknown_fields: dict[str, int] = {}
        for text in unknown_lists:
            for name, count in json.loads(text).items():
                unknown_fields[name] = unknown_fields.get(name, 0) + count
        field_kinds: dict[str, dict[str, int]] = {}
        for text in summaries[4] or []:
            merge_kinds(field_kinds, json.loads(text))
        records = rows.filter(F.col(REASON).isNull() & F.col(_RECORDS_READ).isNull()).select(
            F.col(SOURCE).alias(DELIVERED_FROM), *feed.column_names
        )
        if quarantined:
            quarantine = rows.filter(F.col(REASON).isNotNull()).select(
                F.col(SOURCE).alias("source_file"), F.col(LINE).alias("line"),
                F.col(REASON).alias("reason"), F.col(_RAW_TEXT).alias("raw_text"),
            )
        else:
            # Nothing quarantined: an empty table of the driver's, which no Spark job computes
            # (limit 0 makes Spark's optimizer plan it as an empty local relation).
            quarantine_schema = spark_schema(QUARANTINE_SCHEMAS[feed.name.removesuffix("_landing")])
            quarantine = self.session.createDataFrame([], quarantine_schema).limit(0)
        # Read from the cache, or held by the driver: holding them again would copy them for nothing.
        self._held_already.append(quarantine)
        return LandingRead(
            records=nw.from_native(records),
            records_read=int(records_read),
            files=tuple(files),
            quarantine=nw.from_native(quarantine),
            unknown_fields=dict(sorted(unknown_fields.items())),
            field_kinds=dict(sorted(field_kinds.items())),
            quarantined=int(quarantined),
        )

    def scan(self, files: Sequence[str], schema: TableSchema, store: Store) -> nw.LazyFrame:
        struct = spark_schema(schema)
        with self.errors():
            if not files:
                return nw.from_native(self.session.createDataFrame([], struct))
            return nw.from_native(self.session.read.schema(struct).parquet(*[spark_uri(f) for f in files]))

    def frame(self, rows: Sequence[tuple], schema: TableSchema) -> nw.LazyFrame:
        with self.errors():
            return nw.from_native(self.session.createDataFrame(list(rows), spark_schema(schema)))

    def hold(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        native = frame.to_native()
        if any(native is held for held in self._held_already):
            return frame
        # Persisted, the table is computed by the first check that reads it;
        # the other checks and the writer read the cached blocks.
        with self.errors():
            return nw.from_native(native.persist(StorageLevel.MEMORY_AND_DISK))

    def release(self, frame: nw.LazyFrame) -> None:
        with self.errors():
            native = frame.to_native()
            if any(native is held for held in self._held_already):
                self._held_already = [held for held in self._held_already if held is not native]
            else:
                native.unpersist(blocking=False)
            # Landing records were kept only to compute the landing table, now written.
            for records in self._landing_records:
                records.unpersist(blocking=False)
            self._landing_records.clear()

    def errors(self) -> contextlib.AbstractContextManager[None]:
        """Translates a Spark that ran out of memory or whose JVM died into one line naming the setting to raise."""
        return spark_errors(self.master)

    def write(self, frame: nw.LazyFrame, schema: TableSchema, directory_uri: str, store: Store) -> list[str]:
        # Cast to the declared types: Spark may have computed a decimal or an
        # int where the table declares a double or a bigint, and the Iceberg
        # commit refuses files whose types differ from the table's.
        typed = frame.to_native().select([F.col(c.name).cast(SPARK_TYPES[c.type]).alias(c.name) for c in schema.columns])
        # Spark creates the folder itself and refuses to write into an existing
        # one; each write has a new folder, so nothing is ever overwritten. ("error": the
        # Connect client knows the mode by that name only; classic takes it too.)
        try:
            with self.errors():
                typed.write.mode("error").parquet(spark_uri(directory_uri))
        except PySparkException as error:
            raise EngineError(f"{directory_uri}: Spark could not write the table: {_first_line(error)}") from None
        # Spark also leaves _SUCCESS and checksum files; the table is the part files.
        written = store.list_files(directory_uri)
        files = [f for f in written if _is_part_file(f)]
        if not files:
            raise EngineError(f"{directory_uri}: Spark wrote no Parquet part files")
        store.delete_files([f for f in written if not _is_part_file(f)])
        return files


def _is_part_file(uri: str) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return name.startswith("part-") and name.endswith(".parquet")
