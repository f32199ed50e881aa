"""Every module imports: catches a module that ships with an undefined name or a broken import."""

import importlib
import pkgutil

import prefgate


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(prefgate.__path__, prefix="prefgate.")]
    assert "prefgate.data.records" in names and "prefgate.cli" in names
    for name in names:
        if not name.endswith("__main__"):  # importing it runs the CLI
            importlib.import_module(name)
