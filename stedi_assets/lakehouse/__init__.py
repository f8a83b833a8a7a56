"""The lakehouse library: stores, Iceberg tables, engines, the ingestion plan, the ledger, SQL, maintenance.

No Dagster here: the Dagster layer (``stedi_assets.orchestration``) builds the objects
this library works with and calls it.

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
* ``protocol.py``: what the library asks of the object holding a lakehouse's
  settings and clients.

It may import ``stedi_assets.domain`` and ``stedi_assets.settings``, never
``stedi_assets.orchestration`` (``pyproject.toml``'s import contracts; one exception is
listed there with its reason).
"""
