"""Summarises an s3-tests junit XML (bench/s3-tests.sh): passed / failed / skipped in all and per
pytest marker (read from the test file's decorators), and each failure's first error line in
FAILURES (a file)."""
import collections, re, sys
import xml.etree.ElementTree as ET

junit, source, failures_path = sys.argv[1:4]
markers = collections.defaultdict(list)
pending = []
for line in open(source):
    m = re.match(r"@pytest\.mark\.(\w+)", line.strip())
    if m:
        pending.append(m.group(1))
        continue
    m = re.match(r"def (test_\w+)\(", line)
    if m:
        markers[m.group(1)] = pending or ["(none)"]
        pending = []
    elif line.strip() and not line.startswith("@"):
        pending = []

totals = collections.Counter()
per = collections.defaultdict(collections.Counter)
fails = []
for case in ET.parse(junit).getroot().iter("testcase"):
    name = case.get("name").split("[")[0]
    if case.find("failure") is not None or case.find("error") is not None:
        outcome = "failed"
        el = case.find("failure") if case.find("failure") is not None else case.find("error")
        text = (el.get("message") or el.text or "").strip().splitlines()
        fails.append(f"{name}: {text[0][:240] if text else ''}")
    elif case.find("skipped") is not None:
        outcome = "skipped"
    else:
        outcome = "passed"
    totals[outcome] += 1
    for m in markers.get(name, ["(none)"]):
        per[m][outcome] += 1

print(f"s3-tests test_s3.py: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped ({sum(totals.values())} run)")
print(f"{'marker':32} {'passed':>7} {'failed':>7} {'skipped':>8}")
for m in sorted(per, key=lambda m: (-per[m]["failed"], m)):
    c = per[m]
    print(f"{m:32} {c['passed']:7} {c['failed']:7} {c['skipped']:8}")
with open(failures_path, "w") as f:
    f.write("\n".join(sorted(fails)) + "\n")
print(f"failures, one line each: {failures_path}")
