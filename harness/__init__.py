"""harness: a reproducibility test harness for seeded recurrent networks."""

__version__ = "0.1.0"
