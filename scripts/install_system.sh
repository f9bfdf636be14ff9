#!/usr/bin/env bash
# Install the Debian packages micromix uses, when apt is usable; otherwise say what to do.
#   install_system.sh data   Fashion-MNIST (dataset-fashion-mnist)
#   install_system.sh arm    Cortex-M toolchain and emulator, valgrind (for export tests/benchmarks)
# Without apt (or root) it warns and exits 0, so `make` still works; with MICROMIX_STRICT=1
# (CI) a failed install exits 1, because the tests that need the packages would fail anyway.
set -u
what=${1:-data}
case "$what" in
  data) pkgs="dataset-fashion-mnist" ;;
  arm)  pkgs="gcc make binutils gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm valgrind" ;;
  *) echo "usage: $0 data|arm" >&2; exit 2 ;;
esac

have_data() {
  for d in "${MICROMIX_DATA:-}" /usr/share/datasets/fashion-mnist; do
    [ -n "$d" ] && [ -e "$d/train-images-idx3-ubyte.gz" -o -e "$d/train-images-idx3-ubyte" ] && return 0
  done
  return 1
}
have_arm() { command -v gcc >/dev/null && command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null && command -v valgrind >/dev/null; }

if [ "$what" = data ] && have_data; then exit 0; fi
if [ "$what" = arm ] && have_arm; then exit 0; fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
fi
if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
  echo "installing $pkgs with apt-get ..."
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $pkgs >/dev/null 2>&1; then
    if { [ "$what" = data ] && have_data; } || { [ "$what" = arm ] && have_arm; }; then exit 0; fi
  fi
  echo "warning: apt-get could not install $pkgs." >&2
fi
if [ "$what" = data ]; then
  echo "warning: Fashion-MNIST is not installed. Install it with 'sudo apt-get install dataset-fashion-mnist'," >&2
  echo "         or set MICROMIX_DATA (or pass --data-dir) to a folder with the four IDX .gz files." >&2
  echo "         Tests that need it will be skipped; 'micromix run' will stop and say the same." >&2
else
  echo "warning: Cortex-M tools missing; run 'sudo apt-get install $pkgs'. Those tests will be skipped." >&2
fi
case "${MICROMIX_STRICT:-}" in
  ""|0) exit 0 ;;
  *) echo "error: MICROMIX_STRICT=1 and $pkgs could not be installed." >&2; exit 1 ;;
esac
