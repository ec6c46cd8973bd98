"""The torch-free runtime: everything a program needs to run a trained model on audio.

audio (I/O, resampling) -> onnx_model (the exported model) -> streaming (windows, scores, the engine) ->
decision (words from scores) -> spotter (the Python API) and capture (a microphone or a file, block by block), with
the bundled models (bundled, ``weights/``) and the label helpers (labels). Nothing here imports PyTorch,
torchaudio, Lightning, librosa or matplotlib, nor any part of ``pipeline.train`` or ``pipeline.data``, with one
exception: :func:`pipeline.runtime.spotter.load_checkpoint` imports ``pipeline.train.model`` when it is given a
``.ckpt`` file (tests/test_runtime.py holds both rules).
"""
