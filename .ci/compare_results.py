"""CI: say in plain words whether this machine is the kind that made the committed results,
then compare the regenerated files with the committed ones (docs/method.md §11).

    python .ci/compare_results.py fingerprint   # before regenerating
    python .ci/compare_results.py compare       # after: fails on any difference

Every file under results/ and dvc.lock must come out byte for byte, except the
`platform.json` beside each provenance record, which says where its job ran and so differs
between machines by design: those are accepted (and restored to the committed bytes so that
later checks see a clean tree)."""

from __future__ import annotations

import json
import subprocess
import sys

from conceptspace import numerics

RECORD = f"results/default/fit_classifier/{numerics.PLATFORM}"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def fingerprint() -> None:
    try:
        committed = json.loads(git("show", f"HEAD:{RECORD}"))
    except subprocess.CalledProcessError:
        committed = None
    here = numerics.platform()
    if committed is None:
        print(f"The committed results record no platform; this machine: {here['cpu']}.")
    elif committed == here:
        print(f"This machine is of the kind that made the committed results ({here['cpu']}).")
    else:
        print(
            "This machine differs from the one that made the committed results:\n"
            f"  committed on: {committed['cpu']} [{committed['cpu_features']}]\n"
            f"  this machine: {here['cpu']} [{here['cpu_features']}]\n"
            "The pinned numerics promise the same bytes on both (docs/method.md §11); a "
            "difference below is a broken promise, not a change of code."
        )


def compare() -> int:
    status = git("status", "--porcelain", "--", "dvc.lock", "results").splitlines()
    bad = []
    for path in (line[3:] for line in status):
        if path.endswith(f"/{numerics.PLATFORM}"):
            git("checkout", "--", path)
            continue
        bad.append(path)
    if bad:
        print(f"{len(bad)} regenerated files differ from the committed ones:", file=sys.stderr)
        for path in bad:
            print(f"  {path}", file=sys.stderr)
        return 1
    print(f"every regenerated file equals the committed one ({numerics.PLATFORM} aside)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["fingerprint"]:
        fingerprint()
    elif sys.argv[1:] == ["compare"]:
        sys.exit(compare())
    else:
        sys.exit("usage: python .ci/compare_results.py fingerprint|compare")
