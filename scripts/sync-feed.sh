#!/bin/sh
# Appends one entry per run to a local feed mirror, as a stand-in for
# fetching a remote feed.
set -eu
mkdir -p "$DATA_DIR"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) slot=${AGENT_RUNNER_SLOT:-manual}" >> "$DATA_DIR/feed.log"
echo "feed mirror has $(wc -l < "$DATA_DIR/feed.log") entries"
