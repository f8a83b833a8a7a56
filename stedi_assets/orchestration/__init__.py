"""The Dagster layer: resources built from the settings, assets and their checks, the IO manager,
sensors, schedules, alerts and audit checks. ``stedi_assets.definitions`` assembles them.

It calls the lakehouse library (``stedi_assets.lakehouse``) and the domain
(``stedi_assets.domain``); nothing below it imports it.
"""
