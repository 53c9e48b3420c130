"""The projects app's job kinds, one module per area; importing this package registers them.

The framework they run in (``JobKind``, ``register``, ``execute``) is :mod:`projects.background`.
"""

from projects.jobs import conversion, datasets, projects, teachers

__all__ = ["conversion", "datasets", "projects", "teachers"]
