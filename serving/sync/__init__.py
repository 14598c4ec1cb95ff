"""The model-sync agent: committed model versions from S3 to TF Serving's local model directory.

TF Serving cannot read ``s3://`` (tensorflow/serving#1963) and loads any integer-named directory
it sees, whole or not (#1086), so each serving pod runs this agent. It lists committed versions
(`contracts.store`), downloads each wanted one into a hidden staging directory on the same
filesystem, verifies every file's size and sha256 against the manifest, and renames it to
``DEST/NAME/<version>`` in one step. See `serving.sync.cli` for the command line.

Modules: `agent` (the loop), `download` (stage/verify/install one version), `local` (the model
directory and the ownership ledger), `backoff`, `status`, `health` (probe endpoints and TF
Serving's model status), `metrics` (Prometheus, ``tfserving_sync_*``), `errors`.
Nothing here imports TensorFlow: the agent's image ships boto3, protobuf and the
tensorflow-serving-api config protos only.
"""
