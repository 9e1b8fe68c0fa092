#!/bin/sh
# Exits 1 when the disk holding the data folder is fuller than
# DISK_WARN_PERCENT.
set -eu
mkdir -p "$DATA_DIR"
used=$(df -P "$DATA_DIR" | awk 'NR == 2 {sub("%", "", $5); print $5}')
if [ "$used" -ge "$DISK_WARN_PERCENT" ]; then
    echo "disk ${used}% used, above ${DISK_WARN_PERCENT}%" >&2
    exit 1
fi
echo "disk ${used}% used"
