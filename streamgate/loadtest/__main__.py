"""``python -m streamgate.loadtest`` (until ``streamgate loadtest`` is wired)."""

from __future__ import annotations

import argparse
import sys

from streamgate.loadtest.cli import add_arguments, main


def _run() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamgate.loadtest", description=add_arguments.__doc__
    )
    add_arguments(parser)
    return main(parser.parse_args())


if __name__ == "__main__":
    sys.exit(_run())
