import sys

from fiberflow.cli import main

sys.exit(main())
