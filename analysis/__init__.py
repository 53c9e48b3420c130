"""The analysis app: look inside a teacher — activation captures, skip transcoders, features, circuits.

It has the shape of ``projects/`` (see docs/architecture.md): ``engine/`` is the computation (torch, no
Django; one module per concern: capture, shards, transcoders, training, metrics, export, features), and the
roles ``models/``, ``actions/``, ``jobs/``, ``views/``, ``api/`` grow one module per area (captures,
transcoders, features, circuits) as they are built. Pages mount under ``/o/<org>/analyses/`` (``urls.py``).
"""
