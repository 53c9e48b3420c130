"""The analysis app's models, one module per area, re-exported here (``from analysis.models import Capture``).

- ``captures``: activation captures of a teacher over a dataset, and their shards (blobs)
- ``coders``: training runs of sparse coders (skip transcoders and their baselines) and the coders they made
- ``exports``: a run's coders written for circuit-tracer or SAELens (zip blobs to download)
- ``features``: the features of a coder, described (contexts, logit lens, label) and linked to MLP neurons
"""

from analysis.models.captures import Capture, CaptureShard, CaptureStatus
from analysis.models.coders import Coder, CoderKind, CoderOptimizer, CoderRun, CoderRunStatus, CoderSource
from analysis.models.exports import CoderExport, ExportFormat, ExportStatus
from analysis.models.features import Feature, FeatureNeuronLink

__all__ = [
    "Capture",
    "CaptureShard",
    "CaptureStatus",
    "Coder",
    "CoderKind",
    "CoderOptimizer",
    "CoderSource",
    "CoderRun",
    "CoderRunStatus",
    "CoderExport",
    "ExportFormat",
    "ExportStatus",
    "Feature",
    "FeatureNeuronLink",
]
