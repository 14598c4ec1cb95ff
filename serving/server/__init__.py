"""Former name of `devtools.server` (see __main__.py)."""
