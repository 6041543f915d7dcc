"""CCS truth probe for truthprune (registered as probe ``ccs``)."""
