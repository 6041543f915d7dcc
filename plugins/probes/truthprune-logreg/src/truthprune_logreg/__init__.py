"""Logistic-regression truth probe for truthprune (registered as probe ``logreg``)."""
