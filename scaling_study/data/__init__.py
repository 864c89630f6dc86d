"""Datasets: SQuAD v1.1 (reader, features, post-processing, official metric), the offline
synthetic SQuAD/corpus generator, and masked-LM pretraining data.

Submodules import torch/transformers inside functions, so importing this package is cheap.
"""
