"""`python -m layerscope.cli`: the `layerscope` command without the console script."""

import sys

from layerscope.cli.app import main

sys.exit(main())
