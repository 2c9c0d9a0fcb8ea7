# Helpers for the scripts that build a side venv (the vLLM worker's, the peers'): sourced, not
# run. A side venv is complete when its marker file exists; until then it is (re)built.
#
#   side_venv_begin VENV MARKER LABEL   0 and a "ready" line when MARKER exists; else creates
#                                       VENV (python3 -m venv; exits the script if that fails)
#                                       and returns 1
#   side_pip VENV ARGS...               pip install into VENV, quiet; pip's notes about absent
#                                       local index folders are dropped

side_venv_begin() {
    local venv=$1 marker=$2 label=$3
    if [[ -f "$marker" ]]; then
        echo "$label venv ready: $venv ($(cat "$marker"))"
        return 0
    fi
    echo "creating the $label venv in $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || { echo "could not create $venv" >&2; exit 1; }
    return 1
}

side_pip() {
    local venv=$1
    shift
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}
