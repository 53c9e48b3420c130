"""Engine of the distillation app: pure computation, no Django imports."""
