"""The lakehouse library: stores, Iceberg tables, engines, the ingestion plan, the ledger, SQL, maintenance.

No Dagster here: the Dagster layer (``stedi_assets.orchestration``) builds a
``Lakehouse`` from the settings for each run and calls the library with it.

* ``storage.py``, ``storage_s3.py``: a local folder or an S3 bucket behind one
  interface, including the landing listing and its fingerprints;
* ``catalog.py``, ``tables.py``: the Iceberg catalog and the commit protocol;
  ``recovery.py`` registers tables again after a lost catalog;
* ``engines/``: the Polars and Spark engines that read landing files and
  compute the rules of ``stedi_assets.domain``;
* ``ingestion.py``: what changed in a feed and the plan that updates its
  landing and quarantine tables; ``ledger.py``: the delivery ledger;
  ``planning.py``: which tables are out of date;
* ``query.py``: read-only SQL over the tables; ``maintenance.py``: snapshot
  expiry and unreferenced files;
* ``lakehouse.py``: :class:`Lakehouse`, the one object of the library: a
  lakehouse's settings and the clients built from them (engine, stores,
  catalog), with the table reads and writes every other module uses.

It may import ``stedi_assets.domain`` and ``stedi_assets.settings``, never
``stedi_assets.orchestration`` (``pyproject.toml``'s import contracts).
"""
