"""Evaluation: named seeded transforms that make modified copies, and hit-rate tables."""
