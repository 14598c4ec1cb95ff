"""The contracts every part of the project shares: the ground floor of the import graph.

- `contracts.store`: the model store's S3 layout and manifest (writer: `model publish`; reader:
  the sync agent);
- `contracts.tfconfig`: TF Serving's config files, rendered and parsed;
- `contracts.rules`: one validator per shared rule (model name, version, image reference, warmup
  batch limit).

It imports nothing else of the project, and needs only protobuf and the config protos of
tensorflow-serving-api (never TensorFlow), so the sync image can ship it.
"""
