"""Example third-party plugin for truthprune (the one docs/plugins.md walks through)."""
