"""The FastAPI scoring service and the manager's page.

Imports `features` and `models`; never `training`.
"""
