"""scaling_study: large-batch BERT optimization and scaling studies on Ray."""

__version__ = "0.1.0"
