"""`python -m cluster.cli ...` runs the `facewatch` command."""

import sys

from cluster.cli import main

sys.exit(main())
