"""Terminal output shared by every command: rich consoles for results (stdout) and messages (stderr)."""

from __future__ import annotations

import os

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def warn(message: str) -> None:
    """Print a one-line warning on stderr (once, on the first process of a distributed run)."""
    if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) != "0":
        return
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
