"""`python -m serving.local_run`: the local run's former name, kept for scripts that call it.

The local run moved to `devtools.local_run`; this hands over by module name at run time instead of
importing it, so `serving` never depends on `devtools`.
"""

import runpy

runpy.run_module("devtools.local_run", run_name="__main__", alter_sys=True)
