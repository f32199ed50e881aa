"""The model registry: every run tied to its data, config, evals and gate verdicts; promote and roll back.

SQLite (WAL) at `$PREFGATE_HOME/registry.db` (default `.prefgate/registry.db`). See docs/registry.md.

    from prefgate.registry import Registry, PromotionRefused
    reg = Registry()                                  # or Registry(home="path/to/home")
    reg.add("runs/20261123-142501-dpo-ab12cd", evals=["eval.json"])
    reg.promote("20261123-142501-dpo-ab12cd", "prod", "gate.json")
"""

from prefgate.registry.api import PromotionRefused, Registry, current_actor, default_home
from prefgate.registry.schema import MIGRATIONS, SCHEMA_VERSION, Migration

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "PromotionRefused", "Registry", "current_actor",
           "default_home"]
