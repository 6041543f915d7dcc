"""TTPD truth probe for truthprune (registered as probe ``ttpd``)."""
