#!/bin/sh
# Writes the current time as JSON so health checks can read its age.
set -eu
mkdir -p "$DATA_DIR"
now=$(date -u +%s)
printf '{"time": %s, "run": "%s"}\n' "$now" "$AGENT_RUNNER_RUN_ID" > "$DATA_DIR/heartbeat.json.tmp"
mv "$DATA_DIR/heartbeat.json.tmp" "$DATA_DIR/heartbeat.json"
echo "heartbeat at $(date -u +%H:%M:%S)"
