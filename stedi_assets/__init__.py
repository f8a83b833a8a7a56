"""STEDI lakehouse: landing, trusted and curated zones as Dagster assets."""

from stedi_assets.definitions import defs

__all__ = ["defs"]
