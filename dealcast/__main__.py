"""`python -m dealcast` runs the command line."""

from dealcast.cli import main

raise SystemExit(main())
