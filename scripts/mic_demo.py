"""The microphone demo: an alias of ``kws live`` (see ``kws live --help`` and pipeline/live.py).

Usage::

    python scripts/mic_demo.py --list-devices
    python scripts/mic_demo.py [--ckpt runs/quickstart/checkpoints/best.ckpt] [--device 2] [--save heard.wav]
    python scripts/mic_demo.py --input-file stream.wav --realtime
"""

from __future__ import annotations

import sys

from pipeline.live import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="mic_demo.py"))
