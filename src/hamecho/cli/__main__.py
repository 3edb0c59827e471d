"""``python -m hamecho.cli``: the same as the ``hamecho`` command."""
from . import console

console()
