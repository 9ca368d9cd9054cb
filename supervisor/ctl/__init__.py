"""`asrctl`: the administrator's command line, a thin client of the HTTP API.

Everything it prints that came from the server or the user (model names, descriptions,
errors) is plain text, never rich markup: `[models."NAME"]` in a hint must print as written.
"""

from __future__ import annotations

from typing import Annotated

import typer

from supervisor.ctl.client import DEFAULT_URL, Target
from supervisor.ctl.doctor import doctor
from supervisor.ctl.model_commands import models_app
from supervisor.ctl.status import reload_config, status
from supervisor.ctl.transcribe import transcribe

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help=(
        "Administer a running asr-supervisor.\n\n"
        f"The server is --url, else $ASR_URL, else {DEFAULT_URL}; the key is --api-key, else $ASR_API_KEY. "
        "Both may come before the command (asrctl --url URL status) or after it."
    ),
)


@app.callback()
def _options(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="ASR_URL", help="the server's base URL")] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="ASR_API_KEY", help="API or admin key, when the server has keys"),
    ] = None,
) -> None:
    ctx.obj = Target(url, api_key)


app.command()(status)
app.command("reload")(reload_config)
app.command()(transcribe)
app.command()(doctor)
app.add_typer(models_app, name="models")


def main() -> None:
    app(prog_name="asrctl")
