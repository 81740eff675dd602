"""autoresearch: a daemon that does deep-learning research while its owner sleeps."""

__version__ = "0.1.0"
