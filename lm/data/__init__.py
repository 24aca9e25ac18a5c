"""Data: TFDS builders (datasets.py) and the grain input pipeline (pipeline.py)."""
