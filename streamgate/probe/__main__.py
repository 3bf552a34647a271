"""``python -m streamgate.probe URL``: the probe without the ``streamgate`` command."""

from __future__ import annotations

import argparse
import sys

from streamgate.probe.cli import DESCRIPTION, EPILOG, add_arguments, main

parser = argparse.ArgumentParser(
    prog="streamgate probe",
    description=DESCRIPTION,
    epilog=EPILOG,
    formatter_class=argparse.RawDescriptionHelpFormatter,
)
add_arguments(parser)
sys.exit(main(parser.parse_args()))
