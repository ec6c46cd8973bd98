"""Live keyword spotting from a microphone, on the streaming engine of ``kws transcribe``.

Captures the default input (or ``--device``) at its native rate and shows a live terminal view: the input
level, the top words with their smoothed scores, a log of detections and the count of lost blocks. Ctrl+C
stops it with a summary line. ``--input-file`` plays a file through the same capture path (no microphone
needed); ``--save`` records what was heard to a WAV that stays valid after Ctrl+C. See pipeline/live.py.

Needs PortAudio for a microphone (Debian/Ubuntu: ``apt-get install -y libportaudio2``).

Usage::

    python scripts/mic_demo.py --list-devices
    python scripts/mic_demo.py --ckpt runs/quickstart/checkpoints/best.ckpt [--device 2] [--save heard.wav]
    python scripts/mic_demo.py --ckpt model.ckpt --input-file stream.wav --realtime
"""

from __future__ import annotations

import sys

from pipeline.live import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
