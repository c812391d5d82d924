"""`python -m streampixel_distribute.emulator [options]`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
