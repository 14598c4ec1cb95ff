"""The tfserving-eks CrossGuard policy pack.

`policies/rules/` holds the rules (importable, nothing runs at import); `policies/__main__.py`
builds the `PolicyPack` when Pulumi runs the pack; `policies/runner.py` runs the same rules
offline over captured resources.
"""
