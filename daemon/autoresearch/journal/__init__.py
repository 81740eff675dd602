"""The write-ahead journal: its records, the fold, and the views derived from it (results.tsv, status)."""
