"""``python -m pyfa.lint PATH...``"""

import sys

from pyfa.lint.cli import main

sys.exit(main())
