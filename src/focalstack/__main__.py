"""``python -m focalstack`` (also what ``torchrun -m focalstack`` runs)."""

import sys

from focalstack.cli import main

if __name__ == "__main__":  # importing the module (e.g. to list the package) must not run the CLI
    sys.exit(main())
