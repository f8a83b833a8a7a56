"""The Spark engine: the same narwhals rules, computed by Spark.

Spark reads the landing JSON, computes every table and writes the Parquet
files itself, so the data never has to fit in the Python process; narwhals
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
from urllib.parse import unquote, urlparse

import narwhals as nw

from stedi_assets.engines import EngineError, LandingRead
from stedi_assets.schemas import Column, TableSchema
from stedi_assets.storage import Store, is_s3_uri, local_path

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

# Helper columns of the landing read; the double underscore keeps them apart from feed fields.
_LINE = "value"
_FILE = "__file"
_FIELDS = "__fields"
_MISMATCH = "__mismatch"

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
    return local_path(uri).expanduser().resolve().as_uri()


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
# Spark's JSON reader matches a declared schema's field names with case, so a
# feed that spells ``timeStamp`` would read as null; and with schema inference
# in its usual case-insensitive mode it refuses a feed holding both
# ``timeStamp`` and ``timestamp``. So the landing read takes two passes:
#   1. infer the schema with case-sensitive names: the field spellings found
#      (Spark's inference is its cheapest full pass over JSON);
#   2. parse each line into a struct of every spelling (text values), merge
#      the spellings of each declared column (first non-null wins, as the
#      Polars engine's coalesce) and cast to the declared type. The same pass
#      counts the records, finds the first line that is not a JSON object or
#      holds a value that does not cast, and fills the cache that the
#      landing table is then computed from.
# Casting from the JSON text gives the Polars engine's casts: 1 reads as a
# double, 1.0 as a bigint, a number as a string.

_CORRUPT = "__corrupt_record"


def _merged(fields: Sequence[str]) -> SparkColumn:
    """The text of one declared column: the first non-null of the fields that spell it."""
    values = [F.col(_FIELDS).getField(name) for name in fields]
    if not values:
        return F.lit(None).cast("string")
    return F.coalesce(*values) if len(values) > 1 else values[0]


def _typed(raw: SparkColumn, column: Column) -> SparkColumn:
    if column.type == "bigint":
        # A whole number written as 1.0 is still a bigint to the Polars engine.
        return F.coalesce(raw.try_cast("bigint"), raw.try_cast("double").try_cast("bigint"))
    return raw.try_cast(SPARK_TYPES[column.type])


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
        spellings: dict[str, list[str]] = {}
        for name in self._field_names(uris):
            spellings.setdefault(name.lower(), []).append(name)
        found = sorted({name for names in spellings.values() for name in names})

        as_text = T.StructType([T.StructField(name, T.StringType()) for name in [*found, _CORRUPT]])
        # The JSON parser matches these names with case; Spark's analyzer would
        # not tell timeStamp from timestamp, so the struct's fields are renamed
        # by position before they are referred to.
        positional = T.StructType(
            [T.StructField(f"f{i}", T.StringType()) for i in range(len(found))] + [T.StructField(_CORRUPT, T.StringType())]
        )
        lines = (
            self.session.read.text(uris)
            .select(F.col("_metadata.file_path").alias(_FILE), _LINE)
            .filter(F.trim(_LINE) != "")
        )
        parsed = lines.select(
            _FILE,
            F.from_json(_LINE, as_text, {"columnNameOfCorruptRecord": _CORRUPT}).cast(positional).alias(_FIELDS),
        )
        position = {name: f"f{i}" for i, name in enumerate(found)}
        raw = {c.name: _merged([position[s] for s in spellings.get(c.name.lower(), [])]) for c in feed.columns}
        # (column, text) of the first value of a record that does not cast to its column's type.
        mismatches = [
            F.when(
                raw[c.name].isNotNull() & _typed(raw[c.name], c).isNull(),
                F.struct(F.lit(c.name).alias("column"), raw[c.name].alias("text")),
            )
            for c in feed.columns
        ]
        typed = parsed.select(
            _FILE,
            *[_typed(raw[c.name], c).alias(c.name) for c in feed.columns],
            F.col(_FIELDS).getField(_CORRUPT).isNotNull().alias(_CORRUPT),
            F.coalesce(*mismatches).alias(_MISMATCH),
        )
        # Kept for the rule that follows (landing_records): the files are parsed once more, not twice.
        typed = typed.persist(StorageLevel.MEMORY_AND_DISK)
        self._landing_records.append(typed)
        summary = typed.select(
            F.count(F.lit(1)).alias("records"),
            F.min(F.when(F.col(_CORRUPT), F.col(_FILE))).alias("not_json"),
            F.min(F.when(F.col(_MISMATCH).isNotNull(), F.struct(_FILE, _MISMATCH))).alias("mismatch"),
        ).first()
        if summary["not_json"] is not None:
            source = _source(summary["not_json"], files)
            raise EngineError(f"{source}: not valid newline-delimited JSON (a line is not a JSON object)")
        if summary["mismatch"] is not None:
            source, (column, text) = summary["mismatch"]
            declared = next(c.type for c in feed.columns if c.name == column)
            raise EngineError(
                f"{_source(source, files)}: values do not match the {feed.name} schema "
                f"({column} {text[:40]!r} is not a {declared})"
            )
        records = typed.select(*feed.column_names)
        return LandingRead(nw.from_native(records), int(summary["records"]), tuple(files))

    def _field_names(self, uris: Sequence[str]) -> list[str]:
        """Every field name of the JSON records, each spelling of a name separately."""
        conf = self.session.conf
        case_sensitive = conf.get("spark.sql.caseSensitive")
        # Only for the inference; the engine runs one step at a time, so nothing else sees the setting.
        conf.set("spark.sql.caseSensitive", "true")
        try:
            inferred = self.session.read.option("primitivesAsString", "true").json(list(uris)).schema
        finally:
            conf.set("spark.sql.caseSensitive", case_sensitive)
        # Inference names the column of unparsable lines _corrupt_record; the second pass reports those lines.
        return [name for name in inferred.fieldNames() if name != "_corrupt_record"]

    def scan(self, files: Sequence[str], schema: TableSchema, store: Store) -> nw.LazyFrame:
        struct = spark_schema(schema)
        if not files:
            return nw.from_native(self.session.createDataFrame([], struct))
        return nw.from_native(self.session.read.schema(struct).parquet(*[spark_uri(f) for f in files]))

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

    def write(self, frame: nw.LazyFrame, directory_uri: str, store: Store) -> list[str]:
        # Spark creates the folder itself and refuses to write into an existing
        # one; each version folder is new, so nothing is ever overwritten.
        try:
            frame.to_native().write.mode("errorifexists").parquet(spark_uri(directory_uri))
        except PySparkException as error:
            raise EngineError(f"{directory_uri}: Spark could not write the table: {_first_line(error)}") from None
        # Spark also leaves _SUCCESS and checksum files; the table is the part files.
        files = [f for f in store.list_files(directory_uri) if _is_part_file(f)]
        if not files:
            raise EngineError(f"{directory_uri}: Spark wrote no Parquet part files")
        return files


def _is_part_file(uri: str) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return name.startswith("part-") and name.endswith(".parquet")


def _source(file_path: str, files: Sequence[str]) -> str:
    """The landing URI (as the store names it) of a file Spark names ``file:/...`` or ``s3a://...``."""
    wanted = urlparse(file_path)
    for uri in files:
        candidate = urlparse(spark_uri(uri))
        if (candidate.netloc, unquote(candidate.path)) == (wanted.netloc, unquote(wanted.path)):
            return uri
    return file_path
