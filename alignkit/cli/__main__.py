"""``python -m alignkit.cli``: the same command as the ``alignkit`` console script."""

import sys

from alignkit.cli import main

sys.exit(main())
