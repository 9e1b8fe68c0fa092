#!/bin/sh
# Hook for chat and mention events: the event arrives as one JSON object
# on stdin, and whatever this prints is posted as the reply.
set -eu
event=$(cat)
mkdir -p "$DATA_DIR"
printf '%s\n' "$event" >> "$DATA_DIR/mentions-seen.jsonl"
echo "Thanks! A human will read this soon."
