"""Data: data sets by name (datasets.py; our builders in corpora.py, docstrings.py, synthetic.py and local.py, which
converts the files sources.py reads), the run's tokenizer (tokenizer_cache.py), a split tokenized once
(tokenized.py), examples (tasks.py), rows (rows.py), grain iterators (pipeline.py) and token accounting (stats.py,
printed by report.py)."""
