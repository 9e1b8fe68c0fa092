#!/bin/sh
# Reports how many drafts wait in the outbox.
set -eu
mkdir -p "$DATA_DIR/outbox"
count=$(find "$DATA_DIR/outbox" -name '*.txt' | wc -l)
echo "outbox holds $count draft(s)"
