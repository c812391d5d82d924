"""`python -m streampixel_distribute`: the command line."""

from .cli import main

raise SystemExit(main())
