"""The modelling code of dealcast (no artifacts: trained models live only in MLflow).

Imports `features`; never `training` or `serving`.
"""
