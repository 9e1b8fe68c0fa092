#!/bin/sh
# Runs until stopped: touches a heartbeat file every 10 seconds and
# reports drafts that appear in the outbox.
set -eu
mkdir -p "$DATA_DIR/outbox"
seen=$(find "$DATA_DIR/outbox" -name '*.txt' | wc -l)
echo "watching $DATA_DIR/outbox ($seen drafts)"
while :; do
    touch "$DATA_DIR/watcher.beat"
    now=$(find "$DATA_DIR/outbox" -name '*.txt' | wc -l)
    if [ "$now" -ne "$seen" ]; then
        echo "outbox now holds $now drafts"
        seen=$now
    fi
    sleep 10
done
