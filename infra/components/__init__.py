"""One ComponentResource per concern. Components take frozen args dataclasses of plain values and
Outputs, never read config, parent every child to themselves and register their outputs."""
