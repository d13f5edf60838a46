"""Runs quickstart.sql through psql 15 and checks its output section by section.

    python3 check.py            # prints PASS/FAIL psql <section> lines
    python3 check.py --update   # rewrites quickstart.expected from this run (review the diff!)

The output is normalized before the comparison: event ids, hashes, timestamps, tokens
and the port become placeholders, and runs of spaces or dashes (column widths, which follow
the volatile values) are collapsed. Everything else must match quickstart.expected.
"""

import difflib
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SQL = os.path.join(HERE, "quickstart.sql")
EXPECTED = os.path.join(HERE, "quickstart.expected")
SCHEMA = os.path.join(HERE, "..", "schema.dbx")

HOST = os.environ.get("EVENTDBX_HOST", "127.0.0.1")
PORT = os.environ.get("EVENTDBX_PORT", "6363")
TOKEN = os.environ.get("EVENTDBX_TOKEN", "")
READER_TOKEN = os.environ.get("EVENTDBX_READER_TOKEN", "")


def conninfo(user, password):
    return f"host={HOST} port={PORT} dbname=default user={user} password={password}"


def run_psql():
    with open(SCHEMA, encoding="utf-8") as f:
        schema = f.read()
    env = dict(os.environ, PGCONNECT_TIMEOUT="10", PGAPPNAME="compat-psql")
    for var in ("PGPASSWORD", "PGUSER", "PGDATABASE", "PGHOST", "PGPORT", "PGSERVICE", "PGOPTIONS"):
        env.pop(var, None)
    cmd = [
        "psql", "-X", "-a", "-w", "-v", "ON_ERROR_STOP=0",
        "-v", f"schema={schema}",
        "-v", f"admin={conninfo('compat', TOKEN)}",
        "-v", f"scram={conninfo(TOKEN.split('_')[1] if '_' in TOKEN else 'x', TOKEN)}",
        "-v", f"reader={conninfo('reader', READER_TOKEN)}",
        "-v", f"wrong={conninfo('compat', TOKEN[:-4] + '0000')}",
        "-f", SQL, conninfo("compat", TOKEN),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=120,
                          check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def normalize(text):
    out = []
    for line in text.splitlines():
        line = line.replace(f'port "{PORT}"', 'port "<port>"').replace(f"port {PORT} ", "port <port> ")
        line = line.replace(f"port={PORT} ", "port=<port> ")
        line = re.sub(r"dbx_[0-9a-f]{16}_[0-9a-f]+", "<token>", line)
        line = re.sub(r"\b[0-9a-f]{64}\b", "<hex64>", line)
        line = re.sub(r"\btoken [0-9a-f]{16}\b", "token <token_id>", line)
        line = re.sub(r'user "[0-9a-f]{16}"', 'user "<token_id>"', line)
        line = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d(:\d\d)?)?", "<time>", line)
        line = re.sub(r"(?<![\w.])\d{15,20}(?![\w.])", "<event_id>", line)
        line = re.sub(r"^psql:\S*quickstart\.sql:\d+:", "psql:quickstart.sql:", line)
        line = re.sub(r" {2,}", " ", line)
        line = re.sub(r"-{2,}", "--", line)
        out.append(line.rstrip())
    return out


def sections(lines):
    """Splits the normalized output at the `## name` lines printed by \\echo."""
    result = {}
    order = []
    current = None
    for line in lines:
        if line.startswith("## "):
            current = line[3:].replace("\\\\", "\\")
            order.append(current)
            result[current] = []
        elif current is not None and not line.startswith("\\echo '## "):
            result[current].append(line)
    return order, result


def main():
    code, output = run_psql()
    lines = normalize(output)
    if "--update" in sys.argv:
        with open(EXPECTED, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {EXPECTED} (psql exit code {code})")
        return 0
    if os.environ.get("COMPAT_DEBUG"):
        sys.stderr.write(output)
    with open(EXPECTED, encoding="utf-8") as f:
        want_order, want = sections(f.read().splitlines())
    got_order, got = sections(lines)
    failed = 0
    for name in want_order:
        if name not in got:
            failed += 1
            print(f"FAIL psql {name}: section missing from psql's output (exit code {code})")
            continue
        if got[name] == want[name]:
            print(f"PASS psql {name}")
            continue
        failed += 1
        diff = [d for d in difflib.unified_diff(want[name], got[name], lineterm="", n=0)
                if d[:1] in "+-" and not d.startswith(("+++", "---"))]
        print(f"FAIL psql {name}: output differs from quickstart.expected: {' | '.join(diff[:6])[:400]}")
    for name in got_order:
        if name not in want:
            failed += 1
            print(f"FAIL psql {name}: section not in quickstart.expected")
    if code != 2:
        # The last section's failed \connect ends psql with exit code 2; anything else
        # (0: it connected with a wrong password; 1, 3: psql itself failed) is wrong.
        failed += 1
        print(f"FAIL psql exit code: {code}, want 2 (from the failed \\connect at the end)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
