#!/bin/sh
# Deletes outbox drafts older than seven days.
set -eu
mkdir -p "$DATA_DIR/outbox"
find "$DATA_DIR/outbox" -name '*.txt' -mtime +7 -print -delete
echo "cleanup done"
