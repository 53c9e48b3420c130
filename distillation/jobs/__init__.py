"""The distillation app's job kinds, one module per area; importing this package registers them.

- ``importance``: score a teacher's layers, heads / KV groups and MLP neurons on a domain dataset, then propose recipes
- ``builds``: prune, heal by distillation, write GGUF, quantize, evaluate, and add the student to the project
- ``baselines``: the honest baselines of a built student at the same size and budget, added to its report
"""

from distillation.jobs import baselines, builds, importance

__all__ = ["baselines", "builds", "importance"]
