#!/usr/bin/env bash
# Set up (if needed), check lint and formatting, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .            # lint rules and import order (pyproject.toml's [tool.ruff])
.venv/bin/ruff format --check .   # the code's formatting
exec .venv/bin/python -m pytest -q "$@"
