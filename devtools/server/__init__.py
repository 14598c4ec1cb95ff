"""A local server that speaks TF Serving's REST and gRPC APIs (``python -m devtools.server``)."""
