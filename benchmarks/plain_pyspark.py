"""The five zone rules as a plain PySpark script: JSON in, Parquet out, no Dagster, no checks.

The yardstick for the Spark engine: what a hand-written Glue-style job costs on
the same landing zone and the same machine. Same rules as stedi_assets/domain/rules.py
(distinct records; each email's current record with consent; semi joins; the
time join), written directly against the DataFrame API; it reads the feeds
with their declared schemas and their usual spelling only. Left out: the
privacy rules for dirty input (email identity, customers held back for an
unreadable record, shared devices, the consent scope), which change nothing
on the real data.

Usage::

    python -m benchmarks.plain_pyspark --landing DIR --out DIR [--master local[*]]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

SCHEMAS = {
    "customer": (
        "customerName string, email string, phone string, birthDay string, serialNumber string, "
        "registrationDate bigint, lastUpdateDate bigint, shareWithResearchAsOfDate bigint, "
        "shareWithPublicAsOfDate bigint, shareWithFriendsAsOfDate bigint"
    ),
    "accelerometer": "user string, timestamp bigint, x double, y double, z double",
    "step_trainer": "sensorReadingTime bigint, serialNumber string, distanceFromObject bigint",
}
CUSTOMER_ORDER = [
    "lastUpdateDate", "no_consent", "registrationDate", "serialNumber", "customerName", "phone", "birthDay",
    "shareWithResearchAsOfDate", "shareWithPublicAsOfDate", "shareWithFriendsAsOfDate",
]
STRING_COLUMNS = {"serialNumber", "customerName", "phone", "birthDay"}


def run(spark: SparkSession, landing: Path, out: Path) -> dict[str, int]:
    def feed(name: str):
        return spark.read.schema(SCHEMAS[name]).json(str(landing / name)).distinct()

    def write(frame, zone: str, table: str):
        frame.write.mode("overwrite").parquet(str(out / zone / table))

    customer_landing, accelerometer_landing, step_trainer_landing = (
        feed("customer"), feed("accelerometer"), feed("step_trainer")
    )
    customer_columns = customer_landing.columns

    # Each email's current record: latest lastUpdateDate, a tie going to the record without consent.
    ranked = customer_landing.withColumn("no_consent", F.col("shareWithResearchAsOfDate").isNull().cast("int"))
    order = [
        F.coalesce(F.col(c), F.lit("" if c in STRING_COLUMNS else -1)).desc() for c in CUSTOMER_ORDER
    ]
    current = (
        ranked.withColumn("rank", F.row_number().over(Window.partitionBy("email").orderBy(*order)))
        .filter("rank = 1")
        .select(customer_columns)
    )
    customer_trusted = current.filter(F.col("shareWithResearchAsOfDate").isNotNull())
    accelerometer_trusted = accelerometer_landing.join(
        customer_trusted.select(F.col("email").alias("user")), "user", "left_semi"
    )
    customer_curated = customer_trusted.join(
        accelerometer_trusted.select(F.col("user").alias("email")), "email", "left_semi"
    )
    step_trainer_trusted = step_trainer_landing.join(customer_curated.select("serialNumber"), "serialNumber", "left_semi")
    machine_learning_curated = step_trainer_trusted.join(
        accelerometer_trusted.withColumnRenamed("timestamp", "sensorReadingTime").drop("user"),
        "sensorReadingTime",
    ).select(
        "sensorReadingTime", "serialNumber", "distanceFromObject",
        F.col("sensorReadingTime").alias("timestamp"), "x", "y", "z",
    )

    tables = {
        ("landing", "customer_landing"): customer_landing,
        ("landing", "accelerometer_landing"): accelerometer_landing,
        ("landing", "step_trainer_landing"): step_trainer_landing,
        ("trusted", "customer_trusted"): customer_trusted,
        ("trusted", "accelerometer_trusted"): accelerometer_trusted,
        ("curated", "customer_curated"): customer_curated,
        ("trusted", "step_trainer_trusted"): step_trainer_trusted,
        ("curated", "machine_learning_curated"): machine_learning_curated,
    }
    for (zone, table), frame in tables.items():
        write(frame, zone, table)
    # Counted from the written files, so the counts cost no extra pass over the JSON.
    return {table: spark.read.parquet(str(out / zone / table)).count() for (zone, table) in tables}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args(argv)
    spark = (
        SparkSession.builder.master(args.master)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 1)))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        for table, rows in run(spark, args.landing.resolve(), args.out.resolve()).items():
            print(f"{table:<26} {rows:>10,}")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
