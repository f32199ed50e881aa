"""The `prefgate` command: a thin typer shell over the Python API, one sub-command per stage.

Each stage's commands live in `prefgate/commands/<stage>.py`; this module only assembles them.
Exit codes (../shared/DESIGN.md): 0 success, 1 a verdict said no, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import typer

from prefgate import __version__
from prefgate.commands import audit as audit_commands
from prefgate.commands import data as data_commands
from prefgate.commands import demo as demo_commands
from prefgate.commands import diagnose as diagnose_commands
from prefgate.commands import eval as eval_commands
from prefgate.commands import gate as gate_commands
from prefgate.commands import label as label_commands
from prefgate.commands import pairs as pairs_commands
from prefgate.commands import registry as registry_commands
from prefgate.commands import sweep as sweep_commands
from prefgate.commands import train as train_commands
from prefgate.commands.jsonout import JsonCommand

app = typer.Typer(
    name="prefgate",
    help="Preference optimization (DPO and its family) that does not regress the model it trains.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_commands.app.command("filter")(audit_commands.data_filter)
app.add_typer(data_commands.app, name="data")
app.add_typer(pairs_commands.app, name="pairs")
app.add_typer(label_commands.app, name="label")
app.command("audit", cls=JsonCommand)(audit_commands.audit)
app.command("train")(train_commands.train)
app.add_typer(eval_commands.app, name="eval")
app.command("gate", cls=JsonCommand)(gate_commands.gate)
app.add_typer(registry_commands.app, name="registry")
app.command("diagnose", cls=JsonCommand)(diagnose_commands.diagnose)
app.command("sweep")(sweep_commands.sweep)
app.command("merge")(train_commands.merge)
app.command("demo")(demo_commands.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prefgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Preference optimization (DPO and its family) that does not regress the model it trains."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
