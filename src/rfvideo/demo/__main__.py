"""`python -m rfvideo.demo`."""

import sys

from rfvideo.demo.main import main

sys.exit(main())
