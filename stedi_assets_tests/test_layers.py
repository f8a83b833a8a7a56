"""The package's layers import one way, and no module imports itself back through others.

The layers and what each may import are declared once, as import-linter
contracts in ``pyproject.toml``: the CLI and the definitions over the Dagster
layer (``stedi_assets.orchestration``), over the lakehouse library, over the domain,
over the settings; no Dagster in the domain or the library. Does not judge
what a module does, only what it imports.
"""

from __future__ import annotations

import grimp
from importlinter.cli import lint_imports

from stedi_assets_tests.conftest import REPOSITORY


def test_the_import_contracts_hold():
    assert lint_imports(config_filename=str(REPOSITORY / "pyproject.toml")) == 0


def test_no_module_imports_itself_back():
    graph = grimp.build_graph("stedi_assets", cache_dir=None)
    circles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if importer < imported and graph.chain_exists(importer=imported, imported=importer)
    )
    assert circles == [], f"modules that import each other, directly or through others: {circles}"
