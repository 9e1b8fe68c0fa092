#!/bin/sh
# Archives the data folder into the job's own folder.
set -eu
tar -czf "$AGENT_RUNNER_JOB_DIR/data-$(date -u +%Y%m%d).tar.gz" -C "$DATA_DIR" .
echo "backup written to $AGENT_RUNNER_JOB_DIR"
