"""Terminal output shared by every command: rich consoles for results (stdout) and messages (stderr)."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


@rank_zero_only
def warn(message: str) -> None:
    """Print a one-line warning on stderr (once, on the first process of a distributed run)."""
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
