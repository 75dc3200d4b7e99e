# Failures reach the user, on any executor. Every stage reports bad input as one line
# `error: <message>` on stderr and exits non-zero (stages/common.py: entry), and every rule
# redirects that to its `log:` file. On a cluster Snakemake itself only names the job's SLURM
# status and log paths, so when the workflow fails this handler prints, for each failed job,
# the `error:` lines of its own log (else the exception of its last traceback, else the log's
# last line that is not a progress bar).
#
# Snakemake 9 calls `onerror` once, in the process that schedules the jobs (never inside a
# cluster job: it spawns those with --no-hooks), after the scheduler gave up and before it
# exits non-zero; `log` is the list of Snakemake's own log files. The failed jobs are those the
# scheduler records in `workflow.scheduler.failed`.
import os
import re
import sys
import time

_STARTED = time.time()  # this file is read when snakemake starts, before any job runs


_PROGRESS = re.compile(r"\d+%\||\d+it \[")  # a progress bar redraw: "train:  45%|###  | 45/100"


def _stage_errors(path, limit=5):
    """What a failed job's log says: its `error:` lines, else the exception of its last
    traceback (a progress bar may redraw after it, as the stage exits), else its last line
    that is not a progress bar; None when this run wrote no log (none there, or one left by
    an earlier run)."""
    try:
        if os.path.getmtime(path) < _STARTED - 5:  # 5 s for clock skew on a shared disk
            return None
        with open(path, errors="replace") as f:
            # progress bars rewrite their line with carriage returns: split on both
            lines = [ln.rstrip() for ln in f.read().replace("\r", "\n").split("\n")]
    except OSError:
        return None
    said = [ln for ln in lines if ln.strip()]
    lines = [ln for ln in said if not _PROGRESS.search(ln)]
    if said and not lines:
        return ["(no message: its log ends in a progress bar, so the stage was stopped from "
                "outside, e.g. killed or out of memory)"]
    errors = [ln.strip() for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-limit:]
    tracebacks = [i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent")]
    if tracebacks:
        # the exception is the first unindented line after the frames
        after = lines[tracebacks[-1] + 1 :]
        exception = [ln.strip() for ln in after if not ln[:1].isspace()][:1]
        if exception:
            return exception
    return [ln.strip() for ln in lines[-1:]]


def _failed_jobs():
    scheduler = getattr(workflow, "scheduler", None)
    for job in sorted(getattr(scheduler, "failed", ()), key=str):
        yield from getattr(job, "jobs", None) or [job]  # a group job fails as a whole


def report_stage_errors(out=sys.stderr):
    """Print the stages' own error messages of all failed jobs; return how many were found."""
    jobs = list(_failed_jobs())
    if not jobs:
        return 0
    print(f"\nerror: {len(jobs)} job(s) failed; what the stages said:", file=out)
    for job in jobs:
        wildcards = ", ".join(f"{k}={v}" for k, v in job.wildcards_dict.items())
        name = f"{job.rule.name} ({wildcards})" if wildcards else job.rule.name
        logs = [str(f) for f in job.log]
        if not logs:
            print(f"  {name}: the rule keeps no log", file=out)
        for log in logs:
            said = _stage_errors(log)
            if said is None:
                said = ["(no log from this run: the job did not start; see the message above)"]
            elif not said:
                said = ["(empty log: the job was stopped before the stage ran; see above)"]
            for line in said:
                print(f"  {name}: {line}  [{log}]", file=out)
    return len(jobs)


onerror:
    report_stage_errors()
