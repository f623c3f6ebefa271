"""``python -m steadycast.cli``: the ``steadycast`` command without its console script."""

import sys

from steadycast.cli import main

sys.exit(main())
