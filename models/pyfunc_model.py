"""The pyfunc a bundle is logged with, as code (MLflow's models-from-code): MLflow runs this
file to build the model instead of unpickling one. `DealcastModel.load_context` reads the
bundle's data files (models.bundle)."""

import mlflow.models

from models.bundle import DealcastModel

mlflow.models.set_model(DealcastModel())
