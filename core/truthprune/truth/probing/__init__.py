"""The probing protocol: held-out and cross-topic probe accuracy per layer, separation ratios,
dense-vs-pruned comparison (see :mod:`truthprune.truth.probing.protocol`). Import submodules directly;
this package imports nothing heavy."""
