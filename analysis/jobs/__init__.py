"""The analysis app's job kinds, one module per area; importing this package registers them.

- ``captures``: stream a dataset through a teacher and record its MLP activations into shards
- ``coders``: train sparse coders (skip transcoders and baselines) on a capture and measure them
- ``exports``: write a run's coders for circuit-tracer or SAELens as a zip
- ``features``: describe a coder's features; the test box
- ``labels``: an agent labels features from their contexts; each label scored on held-out contexts
"""

from analysis.jobs import captures, coders, exports, features, labels

__all__ = ["captures", "coders", "exports", "features", "labels"]
