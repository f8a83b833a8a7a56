"""The Spark engine: the same narwhals rules, computed by Spark.

Spark reads the landing JSON, computes every table and writes its Parquet
data files itself (pyiceberg then commits them to the table's Iceberg
metadata), so the data never has to fit in the Python process; narwhals
wraps the pyspark DataFrames, so rules.py and checks.py run unchanged.

The session is started through dagster-pyspark's resource on first use and
shared by every engine in the process (one JVM). Importing this module needs
the ``spark`` extra (pyspark, dagster-pyspark); starting the session needs
Java 17+.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import narwhals as nw

from stedi_assets import validation
from stedi_assets.engines import EngineError, LandingRead
from stedi_assets.schemas import TableSchema
from stedi_assets.storage import Store, is_s3_uri, local_path
from stedi_assets.validation import LINE, REASON, SOURCE

try:
    from dagster_pyspark import LazyPySparkResource
    from pyspark import StorageLevel
    from pyspark.errors import PySparkException
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
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
}

_session_lock = threading.Lock()
_session: SparkSession | None = None


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


def session_settings(master: str, conf: Mapping[str, str]) -> dict[str, str]:
    """Spark settings for a session: quiet local defaults, then everything in ``conf``."""
    settings = {
        "spark.master": master,
        "spark.app.name": "stedi",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}",
    }
    if master.startswith("local"):
        # The default of 200 shuffle partitions makes hundreds of tiny tasks on
        # one machine; two per core keeps both cores busy.
        settings["spark.sql.shuffle.partitions"] = str(2 * (os.cpu_count() or 1))
    settings.update(conf)
    if "spark.driver.extraJavaOptions" in conf:
        # Keep the quiet logging unless the given options choose their own.
        options = conf["spark.driver.extraJavaOptions"]
        if "log4j2.configurationFile" not in options:
            settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()} {options}"
    return settings


def spark_session(master: str = "local[*]", conf: Mapping[str, str] | None = None) -> SparkSession:
    """The process's Spark session, started on first use.

    Every engine in the process shares it: starting a JVM takes seconds. The
    settings of the first call win; Spark cannot change most of them later.
    """
    global _session
    with _session_lock:
        if _session is not None and _session.sparkContext._jsc is not None:
            return _session
        java_executable()
        resource = LazyPySparkResource(spark_config=session_settings(master, conf or {}))
        try:
            session = resource.spark_session
        except PySparkException as error:
            raise EngineError(f"Spark did not start with master {master!r}: {_first_line(error)}") from None
        session.sparkContext.setLogLevel("WARN")
        if master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
            # Python workers (the landing reader runs in them) start "python3"
            # from the PATH by default; locally they run this interpreter, so
            # they import the same installed packages as the driver.
            session.sparkContext.pythonExec = sys.executable
        _session = session
        return session


def stop_spark_session() -> None:
    """Stop the shared session (its JVM); the next use starts a new one."""
    global _session
    with _session_lock:
        if _session is not None:
            _session.stop()
            _session = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- landing JSON ------------------------------------------------------------------
#
# Spark reads each landing file's bytes (the binaryFile source: compressed
# files as they are) and its Python workers read each file with the reference
# reader of stedi_assets.validation: the same decompression bound, the same
# record-by-record parsing and the same rules as the Polars engine's careful
# path, which its fast path equals. So the two engines keep and quarantine
# exactly the same records, one bad record costs only itself, and JSON-array
# files are read too. The workers need the stedi_assets package (installed on
# a cluster's nodes, as any Python UDF's code is).

_RAW_TEXT = "raw_text"
_SCHEME = re.compile("^[a-z0-9]+:(//[^/]*)?")


def _file_reads(max_file_mb: int, schema: TableSchema, files: Sequence[str]):
    """A function over binaryFile rows: (the store's URI of the file, the file as the reference reads it).

    Spark names a file ``file:/path`` or ``s3a://bucket/key``; files are told
    apart by their path (the part after the scheme and bucket).
    """
    store_uris = {_SCHEME.sub("", spark_uri(uri)): uri for uri in files}

    def read(rows):
        rules = validation.RecordRules(schema)
        for row in rows:
            uri = store_uris.get(_SCHEME.sub("", row.path), row.path)
            yield uri, validation.reference_file(uri, bytes(row.content), rules, max_file_mb)

    return read


def _record_rows(width: int):
    """A function over file reads: their kept and quarantined records, as rows of the landing read's layout."""

    def rows(item) -> list[tuple]:
        path, read = item
        kept = [(path, line, None, None, *values) for line, *values in read.kept]
        return kept + [(path, line, reason, text, *([None] * width)) for line, reason, text in read.quarantined]

    return rows


class SparkEngine:
    """Computes the tables with Spark (``local[*]`` here, or a cluster given by ``master``)."""

    name = "spark"

    def __init__(
        self, master: str = "local[*]", conf: Mapping[str, str] | None = None,
        max_file_mb: int = validation.DEFAULT_MAX_FILE_MB,
    ) -> None:
        self.master = master
        self.conf = dict(conf or {})
        self.max_file_mb = max_file_mb
        self._landing_records: list[DataFrame] = []

    @property
    def session(self) -> SparkSession:
        return spark_session(self.master, self.conf)

    def read_landing(self, feed: TableSchema, files: Sequence[str], store: Store) -> LandingRead:
        contents = self.session.read.format("binaryFile").load([spark_uri(f) for f in files]).select("path", "content")
        reads = contents.rdd.mapPartitions(_file_reads(self.max_file_mb, feed, files))
        reads = reads.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            totals = reads.map(lambda item: (item[1].records_read, item[1].unknown_fields)).collect()
            columns = [T.StructField(c.name, SPARK_TYPES[c.type], nullable=True) for c in feed.columns]
            layout = T.StructType([
                T.StructField(SOURCE, T.StringType()), T.StructField(LINE, T.LongType()),
                T.StructField(REASON, T.StringType()), T.StructField(_RAW_TEXT, T.StringType()), *columns,
            ])
            # The reference has typed every value already: no second check of each row in Python.
            records_of_files = self.session.createDataFrame(
                reads.flatMap(_record_rows(len(feed.columns))), layout, verifySchema=False
            )
            records_of_files = records_of_files.persist(StorageLevel.MEMORY_AND_DISK)
            records_of_files.count()
        finally:
            reads.unpersist(blocking=False)
        # Kept while the landing table is computed: counted, quarantined and deduplicated from here.
        self._landing_records.append(records_of_files)
        unknown_fields: dict[str, int] = {}
        for _, counts in totals:
            for name, count in counts.items():
                unknown_fields[name] = unknown_fields.get(name, 0) + count
        records = records_of_files.filter(F.col(REASON).isNull()).select(feed.column_names)
        quarantine = records_of_files.filter(F.col(REASON).isNotNull()).select(
            F.col(SOURCE).alias("source_file"), F.col(LINE).alias("line"),
            F.col(REASON).alias("reason"), F.col(_RAW_TEXT).alias("raw_text"),
        )
        return LandingRead(
            records=nw.from_native(records),
            records_read=sum(count for count, _ in totals),
            files=tuple(files),
            quarantine=nw.from_native(quarantine),
            unknown_fields=dict(sorted(unknown_fields.items())),
        )

    def scan(self, files: Sequence[str], schema: TableSchema, store: Store) -> nw.LazyFrame:
        struct = spark_schema(schema)
        if not files:
            return nw.from_native(self.session.createDataFrame([], struct))
        return nw.from_native(self.session.read.schema(struct).parquet(*[spark_uri(f) for f in files]))

    def frame(self, rows: Sequence[tuple], schema: TableSchema) -> nw.LazyFrame:
        return nw.from_native(self.session.createDataFrame(list(rows), spark_schema(schema)))

    def hold(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        # Persisted, the table is computed by the first check that reads it;
        # the other checks and the writer read the cached blocks.
        return nw.from_native(frame.to_native().persist(StorageLevel.MEMORY_AND_DISK))

    def release(self, frame: nw.LazyFrame) -> None:
        frame.to_native().unpersist(blocking=False)
        # Landing records were kept only to compute the landing table, now written.
        for records in self._landing_records:
            records.unpersist(blocking=False)
        self._landing_records.clear()

    def write(self, frame: nw.LazyFrame, schema: TableSchema, directory_uri: str, store: Store) -> list[str]:
        # Cast to the declared types: Spark may have computed a decimal or an
        # int where the table declares a double or a bigint, and the Iceberg
        # commit refuses files whose types differ from the table's.
        typed = frame.to_native().select([F.col(c.name).cast(SPARK_TYPES[c.type]).alias(c.name) for c in schema.columns])
        # Spark creates the folder itself and refuses to write into an existing
        # one; each write has a new folder, so nothing is ever overwritten.
        try:
            typed.write.mode("errorifexists").parquet(spark_uri(directory_uri))
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
