#!/bin/sh
# Drafts a post for the given part of the day into the outbox.
set -eu
part=${1:?usage: draft-post.sh morning|evening}
mkdir -p "$DATA_DIR/outbox"
file="$DATA_DIR/outbox/$(date -u +%Y%m%d)-$part.txt"
echo "Good $part! Today's digest: $(head -n 1 "$DATA_DIR/digest.txt" 2>/dev/null || echo 'none yet')" > "$file"
echo "drafted $file"
