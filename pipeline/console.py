"""Terminal output shared by every command: rich consoles for results (stdout) and messages (stderr)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from pipeline.errors import KWSError

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    """Print ``error: message`` on stderr, the message as plain text (brackets in paths are not markup)."""
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """Print a one-line warning on stderr (once, on the first process of a distributed run)."""
    if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) != "0":
        return
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main`` and exit with its status; bad input (a :class:`KWSError`) is one ``error:`` line
    and status 2."""
    try:
        status = main()
    except KWSError as err:
        print_error(str(err))
        status = 2
    sys.exit(status or 0)
