#!/bin/sh
# Fails on purpose, the way a script does when an upstream API is down.
echo "calling upstream API"
echo "upstream returned HTTP 503" >&2
exit 3
