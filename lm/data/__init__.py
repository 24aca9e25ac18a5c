"""Data: data sets by name (datasets.py; our builders in corpora.py, docstrings.py, synthetic.py) and the grain input pipeline (pipeline.py)."""
