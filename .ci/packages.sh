# Sourced by .ci/run and ./start: installs the Debian packages Basin needs when any is missing.
# libopenblas-dev: BLAS and LAPACK; libncurses-dev: the explorer's terminal; tmux: the end-to-end test.
basin_install_packages() {
  local missing=()
  for p in libopenblas-dev libncurses-dev tmux; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing ${missing[*]} ..." >&2
  # The package lists of a fresh machine may be empty or stale (.ci/run refreshes them first itself).
  [ -n "${BASIN_APT_UPDATED:-}" ] || $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}
