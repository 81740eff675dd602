"""The morning report: ``progress.png``, ``report.md`` and an analysis notebook, derived from the
journal (or, without one, from ``results.tsv``). Nothing here runs at import: matplotlib is only
loaded when a chart is drawn."""
