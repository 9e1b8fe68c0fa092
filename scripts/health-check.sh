#!/bin/sh
# Fails when heartbeat.json is missing or older than MAX_AGE_SECONDS.
set -eu
file="$DATA_DIR/heartbeat.json"
if [ ! -f "$file" ]; then
    echo "no heartbeat yet at $file" >&2
    exit 1
fi
written=$(sed -n 's/.*"time": \([0-9]*\).*/\1/p' "$file")
age=$(( $(date -u +%s) - written ))
if [ "$age" -gt "$MAX_AGE_SECONDS" ]; then
    echo "heartbeat is ${age}s old, limit ${MAX_AGE_SECONDS}s" >&2
    exit 1
fi
echo "heartbeat is ${age}s old"
