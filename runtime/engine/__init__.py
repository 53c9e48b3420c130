"""Engine of the runtime app: pure computation, no Django imports."""
