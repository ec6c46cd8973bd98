"""The training stack (PyTorch, torchaudio, Lightning): the front end (features), augmentation, the acoustic
models (models), the LightningModule (module) and the DataModule (datamodule), the inference model of a checkpoint
(model), ``kws test``'s report, ``kws export`` and the training commands (training_cli). What it trains on comes
from ``pipeline.data``; what it produces runs on ``pipeline.runtime``.
"""
