"""The distillation app's models, one module per area, re-exported here (``from distillation.models import Recipe``).

- ``importance``: importance analyses of a teacher on a domain dataset (layers, heads / KV groups, MLP neurons)
- ``recipes``: student recipes — proposed, written or derived by a strategy; reviewed and approved by a person
- ``builds``: a recipe built into a student (prune, heal by distillation, GGUF, quantize) and its evaluation
"""

from distillation.models.builds import Build, BuildStatus
from distillation.models.importance import AnalysisStatus, ImportanceAnalysis
from distillation.models.recipes import Recipe, RecipeStatus, Strategy

__all__ = [
    "AnalysisStatus",
    "Build",
    "BuildStatus",
    "ImportanceAnalysis",
    "Recipe",
    "RecipeStatus",
    "Strategy",
]
