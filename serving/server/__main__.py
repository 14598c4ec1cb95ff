"""`python -m serving.server`: the command's former name, kept because scripts call it.

The development tool moved to `devtools.server` (development tools live apart from what the cluster
runs). This hands over by module name at run time instead of importing it, so `serving` never
depends on `devtools`.
"""

import runpy

runpy.run_module("devtools.server", run_name="__main__", alter_sys=True)
