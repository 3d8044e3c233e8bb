"""The encoder zoo: how a frozen encoder is stored, found, described, published and reused.

Imports go one way, from the format up to its uses:

- ``config``: the typed ``PackageConfig`` of a package's ``config.json``, parsed once when a
  package is read, and the one place where older packages are upgraded;
- ``package``: the folder format (weights, config, card) and the only way one is read or written;
- ``card``: the model card rendered from a config (rendering only);
- ``hub``: zoo indexes and how ``hub:NAME``, ``hf://ORG/REPO`` or a folder resolves to a package;
- ``encoder``: ``ZooEncoder``, ``load_encoder`` and ``list_encoders``, the Python API;
- ``transfer``: fitting a package to a new task's configuration and agent;
- ``publishing``: packaging run snapshots, publishing, pushing and pulling, verifying an index,
  and maintenance (converting stored dtypes, rewriting shipped cards).
"""
