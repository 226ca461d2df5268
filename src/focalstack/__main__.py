import sys

from focalstack.cli import main

sys.exit(main())
