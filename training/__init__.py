"""Backtests, evaluation against the baselines, MLflow tracking, registry and promotion.

Imports `features` and `models`; never `serving`.
"""
