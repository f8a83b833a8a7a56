"""The domain: what the data is and the rules it follows, with no Dagster and no storage.

* ``schemas.py`` declares every table once, with its grain and column contracts;
* ``rules.py`` holds each zone rule, written once over narwhals frames (any engine);
* ``validation.py`` defines what a landing reader produces, record by record;
* ``profiles.py`` holds the exact counts of known data sets;
* ``simulate.py`` makes the simulated STEDI feeds that a new user starts with.

It may import ``stedi_assets.settings`` and nothing else of the package
(``pyproject.toml``'s import contracts, checked by ``stedi_assets_tests/test_layers.py``).
"""
