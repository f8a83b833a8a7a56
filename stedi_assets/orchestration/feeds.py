"""The landing zone's feeds as observable source assets: what Dagster's own staleness starts from.

Each feed's data version is a digest of its landing files' fingerprints
(``planning.landing_version``, the listing ``stedi run`` plans from). Every
run of ``stedi_job`` observes the feeds it ingests before their landing steps,
so a landing table's materialization records the feed version it read; the
landing sensor records a new observation whenever a feed changes. The UI then
marks a landing table stale exactly when its feed changed since, a derived
table when an input has a newer materialization or the rule settings changed
(its code version), which is what ``planning.out_of_date`` names.
"""

import warnings

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    BetaWarning,
    DataVersion,
    ObserveResult,
    ResourceParam,
    multi_observable_source_asset,
)

from stedi_assets.domain.schemas import FEEDS
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.planning import feed_version


# A data version as Dagster's events record it (its DATA_VERSION_TAG and DATA_VERSION_IS_USER_PROVIDED_TAG,
# not exported; test_dagster_internals holds them equal), for events logged outside an asset's output.
DATA_VERSION_TAG = "dagster/data_version"
USER_PROVIDED_TAG = "dagster/data_version_is_user_provided"


# Dagster 1.13 marks observable source assets and explicit data versions as beta, with a notice
# each time one is used: every `stedi` command would print it. Those two notices are silenced,
# no other warning.
warnings.filterwarnings("ignore", r"Function `multi_observable_source_asset` is currently in beta", BetaWarning)
warnings.filterwarnings("ignore", r"Parameter `data_version` of initializer `Output.__init__`", BetaWarning)
warnings.filterwarnings("ignore", r"Parameter `data_version` of initializer `MaterializeResult", BetaWarning)


def feed_key(feed: str) -> str:
    """The observable source asset of ``feed``'s landing files."""
    return f"{feed}_feed"


FEED_KEYS = [feed_key(feed) for feed in FEEDS]


def _observe(context: AssetExecutionContext, lakehouse: ResourceParam[Lakehouse]):
    """Observe each selected feed's landing files: one data version per feed."""
    for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
        feed = key.path[-1].removesuffix("_feed")
        yield ObserveResult(asset_key=key, data_version=DataVersion(feed_version(lakehouse, feed)))


landing_feeds = multi_observable_source_asset(
    name="landing_feeds",
    specs=[
        AssetSpec(
            feed_key(feed),
            description=f"The {feed.replace('_', '-')} files in the landing zone; "
            "its data version is a digest of their fingerprints.",
            group_name="landing",
        )
        for feed in FEEDS
    ],
    can_subset=True,
)(_observe)
