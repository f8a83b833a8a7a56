"""STEDI lakehouse: landing, trusted and curated zones as Dagster assets."""

__all__ = ["defs"]


def __getattr__(name: str):
    # The code location is built on first use, not when any part of the
    # package is imported: `stedi --help` must work whatever the settings hold.
    if name == "defs":
        from stedi_assets.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
