#!/bin/sh
# Render docs/architecture.d2 to SVG with the pinned D2 (.tools/d2, `make docs-diagram`).
# Usage: docs/render-diagram.sh [OUT]   (default docs/architecture.svg). The one place the
# flags live: the make target and the test that checks the committed SVG both call this.
set -eu
here=$(dirname "$0")
d2="${D2:-$here/../.tools/d2/bin/d2}"
exec "$d2" --layout dagre --pad 20 "$here/architecture.d2" "${1:-$here/architecture.svg}" 2>/dev/null
