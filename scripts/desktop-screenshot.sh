#!/usr/bin/env bash
# Runs the real desktop window under Xvfb (software OpenGL from Mesa),
# signs in, exchanges messages with two other users and saves a picture
# of the window: docs/desktop.png, or the file named as the argument.
# It is the test `window` of sotto-desktop, which the CI runs too.
# Installs what it needs from Debian's packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-docs/desktop.png}")
. .ci/packages
SOTTO_SCREENSHOT="$out" cargo test -p sotto-desktop --test it -- --exact \
  window::the_real_window_signs_in_and_chats_under_xvfb
echo "saved $out"
