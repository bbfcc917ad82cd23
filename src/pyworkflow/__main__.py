"""``python -m pyworkflow``: the command line."""

from __future__ import annotations

from pyworkflow.cli import main

if __name__ == "__main__":
    main()
