"""Engine of the analysis app: pure computation, no Django imports."""
