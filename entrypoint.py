"""The action's and the image's entrypoint: the package's command line (`distribute` by default)."""
from streampixel_distribute.cli import main
raise SystemExit(main())
