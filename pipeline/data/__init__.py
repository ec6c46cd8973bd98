"""The data: Speech Commands layouts, tasks and splits, the decoded-clip cache, the dataset download, and the
generators of audio to train and measure on (the TTS corpus, running speech and sounds, streams with their truth).
Torch-free: ``kws synth``, ``synth-speech`` and ``make-stream`` run on the runtime install."""
