"""The private pyspark attributes the Spark engine uses: each still there and meaning what the engine assumes.

One test per function of ``stedi_assets/lakehouse/engines/spark_internals.py`` on the
test session's running Spark (marked ``spark``), failing with the function's
name when a pyspark upgrade moves or changes what it reads; and a scan of the
package's sources for those attributes anywhere else. The JVM's death itself
(what these serve) is test_spark_engine.py's out-of-memory test.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import stedi_assets

PACKAGE = Path(stedi_assets.__file__).parent
ALLOWED = "spark_internals.py"
PRIVATE_PYSPARK = re.compile(
    r"\._(jsc|jvm|gateway|active_spark_context|accumulatorServer|instantiatedSession|activeSession|jsparkSession|jdf)\b"
)


@pytest.mark.spark
def test_jvm_process_is_the_running_jvm(spark):
    from stedi_assets.lakehouse.engines.spark_internals import jvm_process

    process = jvm_process()
    assert isinstance(process, subprocess.Popen), "jvm_process: pyspark's gateway no longer keeps the JVM's process"
    assert process.poll() is None
    # The process answers for the JVM the session talks to.
    jvm_pid = spark.sparkContext._gateway.jvm.java.lang.ProcessHandle.current().pid()
    assert jvm_pid in (process.pid, *_children(process.pid))


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (spark-submit's launcher scripts start the JVM as a child)."""
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    pids = [int(child) for child in found]
    return pids + [grandchild for child in pids for grandchild in _children(child)]


@pytest.mark.spark
def test_context_stopped_is_false_for_the_running_context(spark):
    from stedi_assets.lakehouse.engines.spark_internals import context_stopped

    assert context_stopped(spark.sparkContext) is False, "context_stopped: the running context reads as stopped"
    # SparkContext.stop is what sets the attribute it reads to None.
    import inspect

    from pyspark import SparkContext

    assert "self._jsc = None" in inspect.getsource(SparkContext.stop), (
        "context_stopped: SparkContext.stop no longer drops _jsc"
    )


@pytest.mark.spark
def test_jvm_context_stopped_asks_the_running_jvm(spark):
    from stedi_assets.lakehouse.engines.spark_internals import jvm_context_stopped

    assert jvm_context_stopped(spark.sparkContext) is False, "jvm_context_stopped: the JVM's context reads as stopped"


@pytest.mark.spark
def test_accumulator_server_is_the_contexts_socket_server(spark):
    import socketserver

    from stedi_assets.lakehouse.engines.spark_internals import accumulator_server

    server = accumulator_server(spark.sparkContext)
    assert isinstance(server, socketserver.BaseServer), "accumulator_server: the context keeps no socket server"
    # The engine wraps its error report: it must be the one socketserver calls.
    assert callable(server.handle_error)


@pytest.mark.spark
def test_forget_dead_jvm_resets_attributes_that_exist(spark):
    from pyspark import SparkContext

    from stedi_assets.lakehouse.engines.spark_internals import FORGOTTEN_ON_JVM_DEATH

    missing = [f"{owner.__name__}.{name}" for owner, name in FORGOTTEN_ON_JVM_DEATH if not hasattr(owner, name)]
    assert missing == [], f"forget_dead_jvm: pyspark no longer has {missing}"
    # While the session runs they hold it: these are the handles a new session would reuse.
    assert SparkContext._active_spark_context is spark.sparkContext
    assert SparkContext._gateway is not None and SparkContext._jvm is not None


def test_the_scan_finds_private_pyspark_attributes():
    assert PRIVATE_PYSPARK.search("SparkContext._gateway")
    assert PRIVATE_PYSPARK.search("session.sparkContext._jsc.sc()")
    assert not PRIVATE_PYSPARK.search("spark_internals.jvm_process()")
    assert not PRIVATE_PYSPARK.search("self._jsc_folder")


def test_no_private_pyspark_attribute_outside_spark_internals():
    sources = [path for path in sorted(PACKAGE.rglob("*.py")) if path.name != ALLOWED]
    assert len(sources) > 10, "the scan found almost no sources: has the package moved?"
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if PRIVATE_PYSPARK.search(line.split("#")[0])
    ]
    assert found == [], f"private pyspark attributes used outside {ALLOWED} (move them there, with a test):\n" + "\n".join(
        found
    )
