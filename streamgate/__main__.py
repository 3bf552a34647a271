"""``python -m streamgate``."""

from __future__ import annotations

import sys

from streamgate.cli import main

sys.exit(main())
