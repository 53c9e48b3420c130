"""Pages of the distillation app (under /o/<org>/students/), one module per area: ``importance``, ``recipes``,
``builds``."""
