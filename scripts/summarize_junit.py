"""Sums JUnit XML reports of several suites into one closing line.

Usage: summarize_junit.py REPORT.xml...  ->  "N passed, N failed, N skipped"
Exits 1 if any test failed or errored, or if a report is missing or holds no
test at all (a suite that silently ran nothing is a failure).
"""

import sys
import xml.etree.ElementTree as ET


def count(path: str) -> tuple:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    passed = failed = skipped = 0
    for suite in suites:
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None or case.get("status") in ("notrun", "disabled"):
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


def main(paths: list) -> int:
    totals = [0, 0, 0]
    ok = True
    for path in paths:
        try:
            counts = count(path)
        except (OSError, ET.ParseError) as error:
            print(f"{path}: no report ({error})")
            totals[1] += 1
            ok = False
            continue
        if sum(counts) == 0:
            print(f"{path}: ran no test")
            ok = False
        for i, n in enumerate(counts):
            totals[i] += n
    passed, failed, skipped = totals
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if ok and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
