"""Development tools: they run on a developer's machine or in CI, never in the cluster.

- `devtools.server`: a local server that speaks TF Serving's REST and gRPC APIs;
- `devtools.bench`: the serving benchmark;
- `devtools.local_run`: the whole job on one machine (train, publish to a loopback S3, sync, serve,
  hot-swap, synth), with its steps in `devtools.local_steps` and child processes in
  `devtools.processes`.

The top floor of the import graph: it may import every other package; none imports it.
"""
