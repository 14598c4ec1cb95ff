"""Operator tools that run beside the Pulumi program, never inside it: the canary SLO gate
(`ops.canary`), version label moves (`ops.model_labels`) and the read-only preflight
(`ops.preflight`). They read the stack through `infra`'s settings (tests/test_layers.py).
"""
