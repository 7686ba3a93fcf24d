"""Entry point of the isolated child: ``python -m edgeship._child`` (see edgeship.isolate)."""

import sys

from edgeship.isolate import child_main

sys.exit(child_main())
