#!/usr/bin/env bash
# Checks that a run leaves the working tree as it found it.
#
#   scripts/tree-check.sh record FILE   save what `git status` shows now
#   scripts/tree-check.sh check FILE    fail, listing the paths, when it shows
#                                       anything else now
#
# Ignored files (build output under target/, .tools/, node_modules/...) do
# not count; a file the run created, changed or deleted that git tracks or
# would add does.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?record or check}
file=${2:?state file}
state() {
  # Each entry with the hash of its content, so that a run that changes an
  # already modified file is caught too.
  git status --porcelain=v1 --untracked-files=all | while IFS= read -r line; do
    path=${line:3}
    path=${path#*-> }
    if [ -f "$path" ]; then
      echo "$line $(git hash-object -- "$path")"
    else
      echo "$line"
    fi
  done
}
case $mode in
  record)
    mkdir -p "$(dirname "$file")"
    state > "$file"
    ;;
  check)
    now=$(state)
    if ! diff -u "$file" <(printf '%s\n' "$now" | sed '/^$/d') > "$file.diff"; then
      echo "the run changed the working tree (git status before and after):" >&2
      cat "$file.diff" >&2
      exit 1
    fi
    echo "tree-check: the working tree is as the run found it"
    ;;
  *)
    echo "usage: $0 record|check FILE" >&2
    exit 2
    ;;
esac
