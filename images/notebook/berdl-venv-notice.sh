# Sourced by /etc/bash.bashrc in the notebook image, so every interactive bash reads it, whatever the
# user's own ~/.bashrc says. One line each, while the file it names exists:
# - berdl-init took over a home from elsewhere (BERDL's production hub): what changed for its user, the
#   first line of ~/.local/state/berdl-init/what-changed.txt, which the user deletes once read;
# - berdl-init's rebuild of a venv after an image upgrade left packages of the old venv uninstalled (the
#   file names them and the command that installs them);
# - packages the user had installed with `pip install --user` on another Python were not all installed
#   again into the venv (the same, for those).
berdl_note="$HOME/.local/state/berdl-init/what-changed.txt"
if [ -f "$berdl_note" ] && IFS= read -r berdl_line < "$berdl_note"; then
    printf 'berdl-init: %s (more: ~/.local/state/berdl-init/what-changed.txt)\n' "$berdl_line" >&2
fi
unset berdl_note berdl_line
for berdl_venv in "${BERDL_VENV_DIR:-}" "$HOME"/.virtualenvs/envs/*; do
    if [ -n "$berdl_venv" ] && [ -f "$berdl_venv/berdl-not-restored.txt" ]; then
        printf 'berdl-init: packages of your venv from before the image upgrade are missing; see %s\n' \
            "$berdl_venv/berdl-not-restored.txt" >&2
        break
    fi
done
for berdl_venv in "${BERDL_VENV_DIR:-}" "$HOME"/.virtualenvs/envs/*; do
    if [ -n "$berdl_venv" ] && [ -f "$berdl_venv/berdl-not-restored-user-site.txt" ]; then
        printf 'berdl-init: packages you installed with pip install --user on another Python are missing from your venv; see %s\n' \
            "$berdl_venv/berdl-not-restored-user-site.txt" >&2
        break
    fi
done
unset berdl_venv
