"""The action's and the image's entrypoint: the package's command line (`distribute` by default)."""
from streampixel_distribute.cli import main  # noqa: I001 - three lines: no blank one after it
raise SystemExit(main())
