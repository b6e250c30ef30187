"""`python -m shared.cli`: the `crmflow` command line (DESIGN's entry point; the commands live in shared/devtools)."""

import sys

from shared.devtools.cli import main

if __name__ == "__main__":
    sys.exit(main())
