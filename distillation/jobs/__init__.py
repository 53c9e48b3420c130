"""The distillation app's job kinds, one module per area; importing this package registers them.

- ``importance``: score a teacher's layers, heads / KV groups and MLP neurons on a domain dataset, then propose recipes
- ``builds``: prune, heal by distillation, write GGUF, quantize, evaluate, and add the student to the project
"""

from distillation.jobs import builds, importance

__all__ = ["builds", "importance"]
