"""``python -m cnn`` is the ``cnn`` console script."""

import sys

from cnn.cli import main

sys.exit(main())
