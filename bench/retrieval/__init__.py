"""Retrieval benchmarks over ../shared/data/classic_ir (MED, CISI, CRAN, CACM)."""
