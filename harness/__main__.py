"""`python -m harness` is the same as `harness`."""

import sys

from harness.cli import main

sys.exit(main())
