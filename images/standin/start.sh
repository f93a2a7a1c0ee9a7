#!/bin/bash
# Stand-in for docker-stacks' start.sh, reduced to what BERDL's images rely on: the container starts as
# the notebook user (the pod's securityContext says so), the hooks in start-notebook.d and
# before-notebook.d run (*.sh files are sourced, so their exports reach the command), then the command.
set -e
for hook_dir in /usr/local/bin/start-notebook.d /usr/local/bin/before-notebook.d; do
    for hook in "${hook_dir}"/*; do
        [ -e "${hook}" ] || continue
        case "${hook}" in
            *.sh)
                # shellcheck disable=SC1090
                source "${hook}"
                ;;
            *) if [ -x "${hook}" ]; then "${hook}"; fi ;;
        esac
    done
done
if [ $# -eq 0 ]; then
    set -- bash
fi
exec "$@"
