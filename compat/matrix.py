"""Builds compat/README.md from a run's PASS/FAIL lines and the versions it detected.

    python3 matrix.py RESULTS_DIR VERSIONS_FILE OUT

RESULTS_DIR holds one <client>.out per client program (its stdout: `PASS <client>
<feature>` / `FAIL <client> <feature>: <reason>` lines, anything else ignored).
VERSIONS_FILE has one `client|what|version` line per component. The prose comes from
README.template.md next to this file; `<!-- versions -->`, `<!-- matrix -->`,
`<!-- specific -->` and `<!-- failures -->` are replaced by the generated tables. Nothing
volatile (times, ids, reasons) goes into the README, so an unchanged result regenerates it
byte for byte: run.sh compares it with the committed one when CI=true.
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Client programs in the order run.sh runs them, with their column headings.
CLIENTS = ["psql", "psycopg2", "psycopg3", "node-pg", "pgjdbc", "replicator", "pgbench"]
HEADINGS = {
    "psql": "psql", "psycopg2": "psycopg 2", "psycopg3": "psycopg 3", "node-pg": "node-postgres",
    "pgjdbc": "pgjdbc", "replicator": "replicator", "pgbench": "pgbench",
}
# The scenario every client runs; the other features are client-specific.
COMMON = [
    "connect (cleartext)",
    "connect (SCRAM-SHA-256)",
    "apply schema",
    "create aggregate",
    "apply events",
    "read state",
    "read history",
    "page outbox",
    "verify",
    "conflict 40001",
    "schema violation 23514",
    "permission denied 42501",
    "wrong password 28P01",
]
LINE = re.compile(r"^(PASS|FAIL) (\S+) (.+?)(?:: (.*))?$")


def parse(results_dir):
    """{client: [(feature, passed)]} in the order the programs printed them."""
    results = {}
    for client in CLIENTS:
        path = os.path.join(results_dir, f"{client}.out")
        rows = []
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    m = LINE.match(line.rstrip("\n"))
                    if m and m.group(2) == client:
                        rows.append((m.group(3), m.group(1) == "PASS"))
        results[client] = rows
    return results


def cell(passed):
    if passed is None:
        return "—"
    return "pass" if passed else "**FAIL**"


def versions_table(path):
    out = ["| client | component | version |", "| --- | --- | --- |"]
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            if len(parts) == 3:
                out.append(f"| {parts[0]} | {parts[1]} | {parts[2]} |")
    return "\n".join(out)


def matrix_table(results):
    columns = [c for c in CLIENTS if any(f in COMMON for f, _ in results[c])]
    out = ["| feature | " + " | ".join(HEADINGS[c] for c in columns) + " |",
           "| --- |" + " --- |" * len(columns)]
    for feature in COMMON:
        cells = []
        for c in columns:
            found = [p for f, p in results[c] if f == feature]
            cells.append(cell(all(found) if found else None))
        out.append(f"| {feature} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def specific_table(results):
    out = ["| client | feature | result |", "| --- | --- | --- |"]
    for c in CLIENTS:
        for feature, passed in results[c]:
            if feature not in COMMON:
                out.append(f"| {HEADINGS[c]} | {feature.replace('|', '&#124;')} | {cell(passed)} |")
    return "\n".join(out)


def failures_list(results):
    failed = [(c, f) for c in CLIENTS for f, p in results[c] if not p]
    if not failed:
        return "None: every feature above passed in the run that generated this file."
    return "\n".join(f"- {HEADINGS[c]}: {f}" for c, f in failed)


def main():
    results_dir, versions_file, out_path = sys.argv[1:4]
    results = parse(results_dir)
    with open(os.path.join(HERE, "README.template.md"), encoding="utf-8") as f:
        text = f.read()
    passed = sum(p for c in CLIENTS for _, p in results[c])
    total = sum(len(results[c]) for c in CLIENTS)
    text = (text.replace("<!-- versions -->", versions_table(versions_file))
                .replace("<!-- matrix -->", matrix_table(results))
                .replace("<!-- specific -->", specific_table(results))
                .replace("<!-- failures -->", failures_list(results))
                .replace("<!-- totals -->", f"{passed} of {total} features passed"))
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
