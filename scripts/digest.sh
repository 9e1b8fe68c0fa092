#!/bin/sh
# Turns the latest metrics sample into a short text digest.
set -eu
mkdir -p "$DATA_DIR"
file="$DATA_DIR/metrics.json"
if [ ! -f "$file" ]; then
    echo "no metrics collected yet; run the collect job first" >&2
    exit 1
fi
load=$(sed -n 's/.*"load15": \([0-9.]*\).*/\1/p' "$file")
disk=$(sed -n 's/.*"disk_used_percent": \([0-9]*\).*/\1/p' "$file")
{
    echo "Digest for $(date -u +%Y-%m-%d)"
    echo "15-minute load: $load"
    echo "disk used: $disk%"
} > "$DATA_DIR/digest.txt"
cat "$DATA_DIR/digest.txt"
