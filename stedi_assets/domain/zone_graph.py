"""Which tables each zone table is computed from, declared without Dagster.

The Dagster layer's asset graph says the same through its assets' inputs
(``orchestration.assets.ZONE_UPSTREAM``, tested equal to this); this
declaration lets ``stedi run`` decide what is out of date without importing
Dagster at all, so a run with nothing to do starts and ends quickly.
"""

from __future__ import annotations

from collections.abc import Mapping

ZONE_INPUTS: Mapping[str, frozenset[str]] = {
    # A landing or quarantine table is read from its feed's files: no input table.
    "customer_landing": frozenset(),
    "customer_quarantine": frozenset(),
    "accelerometer_landing": frozenset(),
    "accelerometer_quarantine": frozenset(),
    "step_trainer_landing": frozenset(),
    "step_trainer_quarantine": frozenset(),
    "customer_trusted": frozenset({"customer_landing", "customer_quarantine"}),
    "accelerometer_trusted": frozenset({"accelerometer_landing", "customer_trusted"}),
    "customer_curated": frozenset({"accelerometer_trusted", "customer_trusted"}),
    "step_trainer_trusted": frozenset(
        {"customer_curated", "customer_landing", "customer_quarantine", "customer_trusted", "step_trainer_landing"}
    ),
    "machine_learning_curated": frozenset({"accelerometer_trusted", "customer_curated", "step_trainer_trusted"}),
}
"""Each zone table -> the tables it is computed from."""
