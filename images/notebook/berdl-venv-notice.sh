# Sourced by /etc/bash.bashrc in the notebook image, so every interactive bash reads it, whatever the
# user's own ~/.bashrc says. One line, while berdl-init's rebuild of a venv after an image upgrade left
# packages of the old venv uninstalled (the file names them and the command that installs them).
for berdl_venv in "${BERDL_VENV_DIR:-}" "$HOME"/.virtualenvs/envs/*; do
    if [ -n "$berdl_venv" ] && [ -f "$berdl_venv/berdl-not-restored.txt" ]; then
        printf 'berdl-init: packages of your venv from before the image upgrade are missing; see %s\n' \
            "$berdl_venv/berdl-not-restored.txt" >&2
        break
    fi
done
unset berdl_venv
