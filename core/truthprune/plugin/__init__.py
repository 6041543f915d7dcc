"""The plugin system: the interfaces, pluggy hook specs, the registry (entry-point discovery) and the contract checks core applies to what plugins return."""
