"""The lakehouse's table layer: Apache Iceberg tables in a catalog.

* ``catalog.py`` builds the catalog from the settings (an SQL catalog on
  ``{lakehouse}/catalog.db``, any SQLAlchemy URL, or the Glue Data Catalog);
* ``tables.py`` creates tables from the declared schemas and commits each
  materialization as one snapshot that replaces the table's contents;
* ``io_manager.py`` is the IO manager that writes and reads them for the assets;
* ``maintenance.py`` expires old snapshots and deletes files no snapshot needs.
"""
