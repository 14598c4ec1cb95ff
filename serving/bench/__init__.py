"""Former name of `devtools.bench` (see __main__.py)."""
