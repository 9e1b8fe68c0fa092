#!/bin/sh
# Collects load, memory and disk figures into metrics.json, keeping the
# previous sample in metrics.prev.json.
set -eu
mkdir -p "$DATA_DIR"
read -r load1 load5 load15 _ < /proc/loadavg
mem_avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
disk_used=$(df -P "$DATA_DIR" | awk 'NR == 2 {sub("%", "", $5); print $5}')
if [ -f "$DATA_DIR/metrics.json" ]; then
    cp "$DATA_DIR/metrics.json" "$DATA_DIR/metrics.prev.json"
fi
cat > "$DATA_DIR/metrics.json.tmp" <<JSON
{"time": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "load1": $load1, "load5": $load5, "load15": $load15, "mem_available_kb": $mem_avail_kb, "disk_used_percent": $disk_used}
JSON
mv "$DATA_DIR/metrics.json.tmp" "$DATA_DIR/metrics.json"
echo "collected: 1-minute load $load1, 15-minute load $load15, disk ${disk_used}% used"
