"""``python -m hamecho.cli``: the same as the ``hamecho`` command."""
import sys

from . import main

sys.exit(main())
