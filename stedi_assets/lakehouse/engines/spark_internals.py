"""The few private pyspark attributes the Spark engine needs, and why each.

pyspark has no public API for the JVM process it launched, for telling a
stopped SparkContext from a running one, or for starting afresh after that
JVM died: these are what the engine needs to report a dead JVM in one line
and start a new one. Each use is here, in one function;
``stedi_assets_tests/engines/test_spark_internals.py`` holds a test per
function that fails, naming it, when a pyspark upgrade moves the attribute.
Everything else in the engine uses pyspark's public API.
"""

from __future__ import annotations

import subprocess

from pyspark import SparkContext
from pyspark.sql import SparkSession


def jvm_process() -> subprocess.Popen | None:
    """The JVM process pyspark launched in this process, or None (none launched, or one it did not launch).

    pyspark keeps it as the ``proc`` of its class-level py4j gateway
    (``SparkContext._gateway``); the gateway's public ``jvm`` view cannot say
    whether, or how, the process exited.
    """
    return getattr(SparkContext._gateway, "proc", None)


def context_stopped(context: SparkContext) -> bool:
    """Whether ``context`` was stopped from Python (``SparkContext.stop`` drops its ``_jsc``).

    pyspark 4's classic SparkContext has no ``isStopped``; asking the JVM
    (``jvm_context_stopped``) would fail once it is gone.
    """
    return context._jsc is None


def jvm_context_stopped(context: SparkContext) -> bool:
    """Whether the JVM side of ``context`` is stopped (a JVM on its way out stops it first).

    Asks the JVM's own SparkContext through ``_jsc``; raises when the JVM
    does not answer.
    """
    return context._jsc.sc().isStopped()


def accumulator_server(context: SparkContext):
    """The socket server through which ``context``'s workers report accumulators, or None.

    pyspark starts it with the context and has no public handle on it; the
    engine quietens its report of connections the dead JVM dropped.
    """
    return getattr(context, "_accumulatorServer", None)


# The class attributes through which pyspark finds its one context, gateway
# and session; ``SparkContext.stop`` and ``SparkSession.stop`` call into the
# JVM, so after its death only resetting them lets a new session start.
FORGOTTEN_ON_JVM_DEATH = (
    (SparkContext, "_active_spark_context"),
    (SparkContext, "_gateway"),
    (SparkContext, "_jvm"),
    (SparkSession, "_instantiatedSession"),
    (SparkSession, "_activeSession"),
)


def forget_dead_jvm() -> None:
    """Drop pyspark's handles on a JVM that is gone, so that the next session starts a new one."""
    for owner, name in FORGOTTEN_ON_JVM_DEATH:
        setattr(owner, name, None)
