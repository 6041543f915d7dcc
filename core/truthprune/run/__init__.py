"""A run from validated config to report: RunConfig, the plan (every plugin created and checked before any load), RunState and the stage functions, sweeps, outputs and checkpoints."""
