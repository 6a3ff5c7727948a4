#!/usr/bin/env bash
# Checks the monitoring files against each other: the alerting rules
# (promtool check and unit tests) and that every metric the rules and the
# Grafana dashboard query is one docs/monitoring.md documents (which the HTTP
# test in engine/cli/tests/http.rs checks against a live node's /metrics).
set -euo pipefail
cd "$(dirname "$0")/../docs/monitoring"
promtool check rules alerts.yml
promtool test rules alerts.test.yml
python3 - <<'PY'
import json, re, sys
documented = set(re.findall(r"^\| `(dongting_[a-z_]+)", open("../monitoring.md").read(), re.M))
used = set()
for p in json.load(open("dashboard.json"))["panels"]:
    for t in p["targets"]:
        used |= set(re.findall(r"dongting_[a-z_]+", t["expr"]))
used |= set(re.findall(r"dongting_[a-z_]+", open("alerts.yml").read()))
# A histogram's series carry a suffix the documented name does not.
used = {re.sub(r"_(bucket|sum|count)$", "", u) if re.sub(r"_(bucket|sum|count)$", "", u) in documented else u for u in used}
missing = sorted(used - documented)
if missing:
    sys.exit(f"monitoring-check: queried but not documented in docs/monitoring.md: {missing}")
print(f"monitoring-check: {len(used)} metrics queried, all documented ({len(documented)} documented)")
PY
