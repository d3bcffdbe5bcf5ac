"""``python -m fastsae.cli``: the ``fastsae`` command."""
import sys

from . import main

sys.exit(main())
