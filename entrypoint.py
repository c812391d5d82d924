"""Container and action entrypoint: the package's CLI (the main job unless a subcommand is given).

Works from an installed package or straight from a checkout (adds ./src to the path then).
"""

import sys
from pathlib import Path

try:
    from streampixel_distribute.cli import main
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from streampixel_distribute.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
