"""What every command line of the project shares: argument types (``cli.args``).

Floor 0 beside ``contracts``: it imports nothing of the project, so the model stage, the sync
agent, the client, the operator tools and the scripts can all use it (tests/test_layers.py).
"""
