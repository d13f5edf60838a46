"""Shared helpers of the Python compat clients: where the server is, and PASS/FAIL lines.

run.sh sets EVENTDBX_HOST, EVENTDBX_PORT, EVENTDBX_TOKEN (admin) and EVENTDBX_READER_TOKEN
(aggregate.read only). Every feature is checked inside `with report.feature("name"):`; an
exception or failed assert there prints `FAIL <client> <name>: <reason>` and the program
goes on with the next feature. The exit code is 1 when any feature failed.
"""

import os
import sys
import traceback
from contextlib import contextmanager

HOST = os.environ.get("EVENTDBX_HOST", "127.0.0.1")
PORT = int(os.environ.get("EVENTDBX_PORT", "6363"))
TOKEN = os.environ.get("EVENTDBX_TOKEN", "")
READER_TOKEN = os.environ.get("EVENTDBX_READER_TOKEN", "")
DBNAME = "default"
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schema.dbx")


def token_id(token):
    """The 16 hex digits after `dbx_`: as user name, the server authenticates with SCRAM."""
    return token.split("_")[1]


def conninfo(token=None, user="compat", **extra):
    parts = {
        "host": HOST,
        "port": str(PORT),
        "dbname": DBNAME,
        "user": user,
        "password": TOKEN if token is None else token,
        "connect_timeout": "10",
    }
    parts.update(extra)
    return " ".join(f"{k}='{v}'" for k, v in parts.items())


def schema_source():
    with open(SCHEMA_FILE, encoding="utf-8") as f:
        return f.read()


class Reporter:
    def __init__(self, client):
        self.client = client
        self.failed = 0
        self.passed = 0

    @contextmanager
    def feature(self, name, on_fail=None):
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - every failure becomes a FAIL line
            if on_fail is not None:
                try:
                    on_fail()
                except Exception:  # noqa: BLE001 - cleanup is best effort
                    pass
            self.failed += 1
            reason = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
            print(f"FAIL {self.client} {name}: {reason[:400]}", flush=True)
            if os.environ.get("COMPAT_DEBUG"):
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"PASS {self.client} {name}", flush=True)

    def finish(self):
        sys.exit(1 if self.failed else 0)


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def expect_eq(actual, wanted, what):
    if actual != wanted:
        raise AssertionError(f"{what}: got {actual!r}, want {wanted!r}")
