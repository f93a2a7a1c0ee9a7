# shellcheck shell=bash
# Sourced by docker-stacks' start.sh (the image's entrypoint) before the notebook server starts.
#
# Points Jupyter at the folders berdl-init prepares in the user's home (its `dirs` step). They follow
# $HOME, which the spawner sets per user (/home/USER), so they cannot be static ENV values of the image:
# an ENV value is fixed at build time, when HOME is /home/jovyan. Values the pod sets win.
export JUPYTER_CONFIG_DIR="${JUPYTER_CONFIG_DIR:-${HOME}/.jupyter}"
export JUPYTER_DATA_DIR="${JUPYTER_DATA_DIR:-${HOME}/.jupyter/data}"
export JUPYTER_RUNTIME_DIR="${JUPYTER_RUNTIME_DIR:-${HOME}/.jupyter/runtime}"
