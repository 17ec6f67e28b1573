"""dealcast's command line: the one edge that wires the packages together.

The libraries live in `features`, `models`, `training` and `serving`; this package only
parses arguments, configures logging and calls them.
"""
