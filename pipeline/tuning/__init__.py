"""The Optuna pieces of ``gloss tune`` (spaces, objective, study, outputs); the stage is
``pipeline/stages/tune.py``. Nothing here imports a stage: training reaches the objective as a callable."""

__all__ = ["objective", "outputs", "protocol", "space", "study"]
