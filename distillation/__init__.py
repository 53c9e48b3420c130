"""The distillation app: build small students from a teacher — importance, recipes, builds, evaluations.

It has the shape of ``projects/`` (see docs/architecture.md): ``engine/`` is the computation (torch and
llama.cpp, no Django; one module per concern: importance, recipes, pruning, calibration, export, evaluation),
and the roles ``models/``, ``actions/``, ``jobs/``, ``views/``, ``api/`` grow one module per area (importance,
recipes, builds, evaluations) as they are built. Pages mount under ``/o/<org>/students/`` (``urls.py``).
"""
