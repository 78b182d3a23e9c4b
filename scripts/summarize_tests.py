#!/usr/bin/env python3
# Copyright (c) 2026 The iocp authors. Distributed under the Boost Software License, Version 1.0.
"""Prints one line "LABEL: N passed, N failed" over the test programs of the given Meson build
directories (their meson-logs/testlog.json). A build directory without a log counts as one failure:
its step never got to run the tests.

    scripts/summarize_tests.py LABEL BUILD_DIR [BUILD_DIR ...]
"""
import json
import os
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    label, builds = sys.argv[1], sys.argv[2:]
    passed = failed = 0
    for build in builds:
        log = os.path.join(build, "meson-logs", "testlog.json")
        if not os.path.exists(log):
            failed += 1
            continue
        with open(log) as f:
            for line in f:
                if json.loads(line).get("result") in ("OK", "EXPECTEDFAIL", "SKIP"):
                    passed += 1
                else:
                    failed += 1
    print(f"{label}: {passed} passed, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
