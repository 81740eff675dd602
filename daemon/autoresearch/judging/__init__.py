"""Judging a run: the keep rule, the noise estimate, runs overtaken by another lane's keep."""
