"""The distillation app's REST API under /api/v1/orgs/<org>/: importance analyses, recipes (with approve and
build), builds, and the one-shot ``distill`` (design document 004's ``POST /api/models/distill``)."""
