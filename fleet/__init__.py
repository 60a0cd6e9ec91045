"""commune-fleet: simulated communes publishing like real agents, for demos and benchmarks."""
