"""Data-set profiles: the exact row counts a known data set must give.

With a profile, the row-count checks compare every table with its expected
count. Without one they assert only what holds for any data (see checks.py).

Counts that depend on a setting carry its value in their key:
``machine_learning_curated_same_customer`` for ``ml_join=same_customer``, and
``{table}_from_consent_date`` for ``consent_scope=from_consent_date`` (both
suffixes for the ML table under both). A profile without the key for a mode
has no exact count for that table in that mode: the row-count check then
checks the bounds only.
"""

from __future__ import annotations

from collections.abc import Mapping

from stedi_assets.settings import ProfileName

# Both known data sets are clean: nothing of them belongs in quarantine.
NOTHING_QUARANTINED = {f"{feed}_quarantine": 0 for feed in ("customer", "accelerometer", "step_trainer")}

# The real STEDI landing data set (956 customers, 81,273 accelerometer and
# 28,680 step-trainer readings): the counts the reference system was accepted on.
STEDI_REFERENCE = {
    "customer_landing": 956,
    "accelerometer_landing": 81_273,
    "step_trainer_landing": 28_680,
    "customer_trusted": 482,
    "accelerometer_trusted": 40_981,
    "customer_curated": 482,
    "step_trainer_trusted": 14_460,
    "machine_learning_curated": 43_681,
    "machine_learning_curated_same_customer": 40_981,
    # consent_scope=from_consent_date: readings taken before the owner's
    # shareWithResearchAsOfDate are left out (and 18 customers whose every
    # reading predates their consent, with their devices). The DuckDB
    # reference, written apart from the package, gives the same counts.
    "accelerometer_trusted_from_consent_date": 32_025,
    "customer_curated_from_consent_date": 464,
    "step_trainer_trusted_from_consent_date": 11_297,
    "machine_learning_curated_from_consent_date": 34_253,
    "machine_learning_curated_same_customer_from_consent_date": 32_025,
    **NOTHING_QUARANTINED,
}

CONSENT_SCOPED_TABLES = frozenset(
    {"accelerometer_trusted", "customer_curated", "step_trainer_trusted", "machine_learning_curated"}
)
"""The tables whose rows depend on the consent scope."""


def _profiles() -> dict[str, Mapping[str, int]]:
    from stedi_assets.domain.simulate import DEFAULT_COUNTS

    return {ProfileName.STEDI_REFERENCE: STEDI_REFERENCE, ProfileName.SIMULATED: {**DEFAULT_COUNTS, **NOTHING_QUARANTINED}}


PROFILE_NAMES = tuple(ProfileName)
"""The profiles' names, as the ``profile`` setting accepts them."""


class UnknownProfileError(ValueError):
    pass


def expected_rows(profile: str, table: str, same_customer: bool, consent_scope: str = "any_time") -> int | None:
    """The count ``table`` must have under ``profile`` in this mode; None without a profile or a count for the mode."""
    if not profile:
        return None
    profiles = _profiles()
    if profile not in profiles:
        raise UnknownProfileError(
            f"unknown data-set profile {profile!r}; known profiles: {', '.join(sorted(profiles))}"
        )
    counts = profiles[profile]
    key = table
    if table == "machine_learning_curated" and same_customer:
        key += "_same_customer"
    if consent_scope == "from_consent_date" and table in CONSENT_SCOPED_TABLES:
        key += "_from_consent_date"
    return counts[key] if key == table else counts.get(key)
