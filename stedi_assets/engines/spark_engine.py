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
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import narwhals as nw

from stedi_assets import validation
from stedi_assets.engines import EngineError, LandingRead
from stedi_assets.schemas import RAW_TEXT_LIMIT, TableSchema
from stedi_assets.storage import Store, is_s3_uri, local_path
from stedi_assets.validation import LINE, NOT_AN_OBJECT, REASON, SOURCE, UNPARSEABLE

try:
    from dagster_pyspark import LazyPySparkResource
    from pyspark import StorageLevel
    from pyspark.errors import PySparkException
    from pyspark.sql import Column as SparkColumn
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

# Columns of the landing read: Spark's text column, and helpers whose double
# underscore keeps them apart from feed fields.
_LINE = "value"
_FIELDS = "__fields"

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
# The records are validated by the engine-neutral expressions of
# stedi_assets.validation, on a raw frame Spark builds in two passes:
#   1. infer the schema with case-sensitive names, which gives every field
#      spelling found and the type the JSON reader gives it (Spark's inference
#      is its cheapest full pass over JSON; in its usual case-insensitive mode
#      it refuses a feed holding both ``timeStamp`` and ``timestamp``);
#   2. split each file into its physical lines (numbered from 1, as the Polars
#      engine numbers them), parse each non-blank line with that schema, and
#      flag the lines that are not JSON objects.
# Spark's analyzer resolves column names without case, so it cannot hold
# ``timeStamp`` and ``timestamp`` as two columns: spellings of one name are
# merged into one raw column before validation (the declared spelling first;
# as text when their types differ, which the validation accepts alike).
# Not read by this engine: JSON-array deliveries (a file holding one array of
# objects); their lines are quarantined as unparseable JSON.

_CORRUPT = "__corrupt_record"
_TEXT = "__text"


def _parse_reason(line: SparkColumn) -> SparkColumn:
    """Why a line that is not a JSON object is rejected: valid JSON of another kind, or not JSON."""
    wrapped = F.from_json(
        F.concat(F.lit('{"v":'), line, F.lit("}")),
        T.StructType([T.StructField("v", T.StringType()), T.StructField(_CORRUPT, T.StringType())]),
        {"columnNameOfCorruptRecord": _CORRUPT},
    )
    return F.when(wrapped.getField(_CORRUPT).isNull(), F.lit(NOT_AN_OBJECT)).otherwise(F.lit(UNPARSEABLE))


class SparkEngine:
    """Computes the tables with Spark (``local[*]`` here, or a cluster given by ``master``)."""

    name = "spark"

    def __init__(self, master: str = "local[*]", conf: Mapping[str, str] | None = None) -> None:
        self.master = master
        self.conf = dict(conf or {})
        self._landing_records: list[DataFrame] = []

    @property
    def session(self) -> SparkSession:
        return spark_session(self.master, self.conf)

    def read_landing(self, feed: TableSchema, files: Sequence[str], store: Store) -> LandingRead:
        uris = [spark_uri(f) for f in files]
        inferred = self._inferred_schema(uris)
        found = [f for f in inferred.fields if f.name != "_corrupt_record"]
        # The JSON parser matches these names with case; the struct's fields
        # are renamed by position before they are referred to.
        as_read = T.StructType([*found, T.StructField(_CORRUPT, T.StringType())])
        positional = T.StructType(
            [T.StructField(f"f{i}", f.dataType) for i, f in enumerate(found)] + [T.StructField(_CORRUPT, T.StringType())]
        )
        position = {f.name: f"f{i}" for i, f in enumerate(found)}

        files_read = self.session.read.text(uris, wholetext=True).select(
            F.col("_metadata.file_path").alias(SOURCE), F.posexplode(F.split(_LINE, "\n")).alias("pos", _TEXT)
        )
        lines = (
            files_read.select(
                SOURCE,
                (F.col("pos") + 1).cast("bigint").alias(LINE),
                # No carriage return of CRLF files, no byte order mark on the first line.
                F.regexp_replace(F.regexp_replace(_TEXT, "\r$", ""), "^\uFEFF", "").alias(_TEXT),
            )
            .filter(F.trim(_TEXT) != "")
            .select(
                SOURCE, LINE, _TEXT,
                F.from_json(_TEXT, as_read, {"columnNameOfCorruptRecord": _CORRUPT}).cast(positional).alias(_FIELDS),
            )
        )
        by_lower: dict[str, list[T.StructField]] = {}
        for field_ in found:
            by_lower.setdefault(field_.name.lower(), []).append(field_)
        declared = {c.name.lower(): c.name for c in feed.columns}
        raw_columns = []
        for lowered, fields in by_lower.items():
            name = declared.get(lowered, fields[0].name)
            fields.sort(key=lambda f: (f.name != name, f.name))
            values = [F.col(_FIELDS).getField(position[f.name]) for f in fields]
            if len({f.dataType for f in fields}) > 1:
                values = [v.cast("string") for v in values]
            raw_columns.append((F.coalesce(*values) if len(values) > 1 else values[0]).alias(name))
        # Kept while the landing table is computed: counted, validated, quarantined and deduplicated from here.
        lines = lines.persist(StorageLevel.MEMORY_AND_DISK)
        self._landing_records.append(lines)
        is_object = F.col(_FIELDS).getField(_CORRUPT).isNull()
        records_read = lines.count()

        raw = nw.from_native(lines.filter(is_object).select(SOURCE, LINE, *raw_columns))
        validated, match = validation.validate_records(raw, feed)
        unknown_fields = validation.unknown_field_counts(raw, match)
        records = validation.kept_records(validated, feed)

        texts = lines.select(SOURCE, LINE, F.substring(_TEXT, 1, RAW_TEXT_LIMIT).alias("raw_text"))
        not_objects = lines.filter(~is_object).select(
            F.col(SOURCE).alias("source_file"), F.col(LINE).alias("line"), _parse_reason(F.col(_TEXT)).alias("reason"),
            F.substring(_TEXT, 1, RAW_TEXT_LIMIT).alias("raw_text"),
        )
        rejected = validation.rejected_records(validated).to_native()
        invalid = (
            texts.join(F.broadcast(rejected), on=[SOURCE, LINE], how="inner")
            .select(F.col(SOURCE).alias("source_file"), F.col(LINE).alias("line"), F.col(REASON).alias("reason"), "raw_text")
        )
        quarantine = not_objects.unionByName(invalid).withColumn("source_file", _store_uri(files)(F.col("source_file")))
        return LandingRead(
            records=records,
            records_read=records_read,
            files=tuple(files),
            quarantine=nw.from_native(quarantine),
            unknown_fields=dict(sorted(unknown_fields.items())),
        )

    def _inferred_schema(self, uris: Sequence[str]) -> T.StructType:
        """The JSON reader's schema of the records, each spelling of a field name separately."""
        conf = self.session.conf
        case_sensitive = conf.get("spark.sql.caseSensitive")
        # Only for the inference; the engine runs one step at a time, so nothing else sees the setting.
        conf.set("spark.sql.caseSensitive", "true")
        try:
            return self.session.read.json(list(uris)).schema
        finally:
            conf.set("spark.sql.caseSensitive", case_sensitive)

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


def _store_uri(files: Sequence[str]):
    """A column function: the store's URI (as the Polars engine names the file) of Spark's file path.

    Spark names a file ``file:/path`` or ``s3a://bucket/key``, escaped as in a
    URI; files are told apart by their path (the part after the scheme and bucket).
    """
    by_path = {urlparse(spark_uri(uri)).path: uri for uri in files}
    mapping = F.create_map(*[F.lit(x) for item in by_path.items() for x in item])

    def store_uri(file_path: SparkColumn) -> SparkColumn:
        path = F.regexp_replace(file_path, "^[a-z0-9]+:(//[^/]*)?", "")
        # The path is URI-escaped, where "+" is itself; url_decode would read it as a space.
        return F.coalesce(mapping[F.url_decode(F.regexp_replace(path, "\\+", "%2B"))], file_path)

    return store_uri
