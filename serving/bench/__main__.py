"""`python -m serving.bench`: the command's former name, kept because scripts call it.

The development tool moved to `devtools.bench` (development tools live apart from what the cluster
runs). This hands over by module name at run time instead of importing it, so `serving` never
depends on `devtools`.
"""

import runpy

runpy.run_module("devtools.bench", run_name="__main__", alter_sys=True)
