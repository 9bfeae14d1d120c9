"""`python -m rfvideo.cli ...` runs the console script."""

import sys

from rfvideo.cli.app import main

sys.exit(main())
