#!/usr/bin/python3
"""tests/scripts/test_plot_progress.py - scripts/plot-progress on a recorded job.

The recorded outputs of a real fmnist-mlp job (tests/data/run-fmnist-mlp: 52
trials, 3 commits, 2 rollbacks with their re-tunes, 12 tests) are copied to a
temporary directory and plotted: the PNG must be a 1600x1000 PNG (signature and
IHDR read with struct), not trivially small, with the coloured trial lines and
the dark training line drawn; what the script reads from the logs (commits,
rollbacks, the lineage, the title) is checked through the script itself. Bad
input (a missing directory or file, an empty file, a garbage line) must exit 2
with one line naming the file and line, and write no picture. Exits 77 (skip)
when /usr/bin/python3 or matplotlib is missing; MLT_SOURCE_ROOT names the tree.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from importlib.machinery import SourceFileLoader

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image
except ImportError:
    print("SKIP: matplotlib is not installed (python3-matplotlib)")
    sys.exit(77)

SRC = os.environ.get("MLT_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(SRC, "scripts", "plot-progress")
DATA = os.path.join(SRC, "tests", "data", "run-fmnist-mlp")
WIDTH, HEIGHT = 1600, 1000

failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures += 1
    return cond


def run(*args):
    p = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def png_size(path):
    """(width, height) from a PNG's IHDR; raises ValueError if it is no PNG."""
    with open(path, "rb") as f:
        head = f.read(33)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    length, kind = struct.unpack(">I4s", head[8:16])
    if kind != b"IHDR" or length != 13:
        raise ValueError("the first chunk is not IHDR")
    return struct.unpack(">II", head[16:24])


def fresh_copy(tmp, name):
    d = os.path.join(tmp, name)
    shutil.copytree(DATA, d)
    return d


def test_picture(tmp):
    d = fresh_copy(tmp, "good")
    rc, out, err = run(d)
    png = os.path.join(d, "progress.png")
    check(rc == 0, f"plot-progress on the recorded job exits 0 (got {rc}: {err.strip()})")
    check(out.strip() == png, f"it prints the picture's path ({out.strip()!r})")
    if not check(os.path.isfile(png), "the default output is OUT_DIR/progress.png"):
        return
    try:
        size = png_size(png)
    except ValueError as e:
        check(False, f"progress.png is a PNG ({e})")
        return
    check(size == (WIDTH, HEIGHT), f"IHDR says {size[0]}x{size[1]}, expected {WIDTH}x{HEIGHT}")
    n = os.path.getsize(png)
    # an empty figure of this size is ~19 KB; the recorded job's is ~190 KB
    check(n > 60000, f"the PNG is not trivially small ({n} bytes > 60000)")
    # inside the top panel's axes (rows 145..610, columns 96..1576 of the figure)
    img = matplotlib.image.imread(png)[160:500, 160:1520, :3]
    coloured = float(((img.max(axis=-1) - img.min(axis=-1)) > 0.3).mean())
    dark = float((img.max(axis=-1) < 0.15).mean())
    # measured there: coloured 0.0126, dark 0.0055; without the trial curves
    # (markers only) coloured 0.0067, without the training line dark 0.0005
    check(coloured > 0.008, f"the trials' coloured curves are drawn ({coloured:.4f} of the top panel)")
    check(dark > 0.002, f"the training branch's black line is drawn ({dark:.4f} of the top panel)")

    other = os.path.join(tmp, "elsewhere.png")
    d2 = fresh_copy(tmp, "good-o")
    rc, out, err = run(d2, "-o", other)
    check(rc == 0 and os.path.isfile(other) and png_size(other) == (WIDTH, HEIGHT),
          f"-o FILE writes the picture there (rc {rc})")
    check(not os.path.exists(os.path.join(d2, "progress.png")), "-o FILE: no OUT_DIR/progress.png")


def test_reading():
    """What the script makes of the recorded logs, through its own classes."""
    pp = SourceFileLoader("plot_progress", SCRIPT).load_module()
    job = pp.Job(pp.read_events(os.path.join(DATA, "progress.jsonl")),
                 pp.read_events(os.path.join(DATA, "decisions.jsonl")),
                 pp.read_job_conf(os.path.join(DATA, "job.conf")))
    check([b for _, b, _ in job.commits] == [7, 35, 72], f"commits of b7, b35, b72 "
          f"({[b for _, b, _ in job.commits]})")
    check([(b, ev) for _, b, ev in job.rollbacks] == [(7, "regressed"), (35, "regressed")],
          f"two rollbacks, both regressed ({job.rollbacks})")
    check(len(job.retunes) == 2 and len(job.summaries) == 52 and len(job.tests) == 12,
          f"2 re-tunes, 52 trial summaries, 12 tests ({len(job.retunes)}, "
          f"{len(job.summaries)}, {len(job.tests)})")
    since = job.lineage_from()
    check(sorted(since) == [7, 35, 72] and all(since[b] > 0 for b in since),
          "the lineage is b7, b35, b72, each from its commit on")
    check(len(job.searches) == 3, f"3 searches shaded ({len(job.searches)})")
    want = ("fmnist-mlp \u2014 final test accuracy 0.8134 at epoch 12.00 \u2014 done: max_epochs 12 "
            "reached\n2 workers \u00b7 tuner mltuner/bayes \u00b7 wall 14.0 s, 52 trials, 68% of the "
            "time in trials \u00b7 final setting: lr 0.00604, m 0.671, batch 128, s 0")
    got = pp.title(job)
    if not check(got == want, "the title names the job, the final test metric and the settings"):
        print(f"     got  {got!r}\n     want {want!r}")


def test_rmse(tmp):
    """A matrix-factorisation job's tests carry rmse; the picture shows RMSE."""
    d = fresh_copy(tmp, "rmse")
    for name, pairs in (("decisions.jsonl", (('"accuracy"', '"rmse"'),
                                             ('"test_accuracy"', '"test_rmse"'))),
                        ("progress.jsonl", (('"accuracy"', '"val_rmse"'),
                                            ('"test_accuracy"', '"test_rmse"')))):
        path = os.path.join(d, name)
        with open(path) as f:
            lines = f.readlines()
        for i, line in enumerate(lines):
            if '"event":"test"' in line:
                for a, b in pairs:
                    line = line.replace(a, b)
                lines[i] = line
        with open(path, "w") as f:
            f.writelines(lines)
    rc, out, err = run(d)
    check(rc == 0 and png_size(os.path.join(d, "progress.png")) == (WIDTH, HEIGHT),
          f"an RMSE job is plotted (rc {rc}: {err.strip()})")
    pp = SourceFileLoader("plot_progress", SCRIPT).load_module()
    job = pp.Job(pp.read_events(os.path.join(d, "progress.jsonl")),
                 pp.read_events(os.path.join(d, "decisions.jsonl")), {})
    check(job.rmse and pp.title(job).startswith("fmnist-mlp \u2014 final test RMSE 0.8134"),
          f"its title names the test RMSE ({pp.title(job).splitlines()[0]!r})")


def bad(tmp, name, edit, want_in_msg):
    d = fresh_copy(tmp, name)
    edit(d)
    rc, out, err = run(d)
    lines = err.strip().splitlines()
    check(rc == 2, f"{name}: exits 2 (got {rc})")
    check(len(lines) == 1 and all(w in lines[0] for w in want_in_msg),
          f"{name}: one line naming {', '.join(want_in_msg)} ({err.strip()!r})")
    check(not os.path.exists(os.path.join(d, "progress.png")), f"{name}: no picture written")


def replace_line(path, n, text):
    with open(path) as f:
        lines = f.readlines()
    lines[n - 1] = text + "\n"
    with open(path, "w") as f:
        f.writelines(lines)


def test_bad_input(tmp):
    missing = os.path.join(tmp, "no-such-dir")
    rc, out, err = run(missing)
    check(rc == 2 and err.strip() == f"plot-progress: {missing}: no such directory",
          f"a missing directory: exit 2, one line ({rc}, {err.strip()!r})")
    rc, out, err = run()
    check(rc == 2 and "usage" in err, f"no argument: exit 2 with the usage ({rc})")

    bad(tmp, "garbage-decisions",
        lambda d: replace_line(os.path.join(d, "decisions.jsonl"), 5, "garbage {"),
        [os.path.join(tmp, "garbage-decisions", "decisions.jsonl") + ":5:", "not JSON"])
    bad(tmp, "not-an-event",
        lambda d: replace_line(os.path.join(d, "progress.jsonl"), 3, "[1, 2]"),
        ["progress.jsonl:3:", "not a JSON object"])
    bad(tmp, "no-t",
        lambda d: replace_line(os.path.join(d, "progress.jsonl"), 4,
                               '{"event":"clock","branch":2,"clock":3,"loss":2.3}'),
        ["progress.jsonl:4:", "\"t\""])
    bad(tmp, "bad-loss",
        lambda d: replace_line(os.path.join(d, "progress.jsonl"), 2,
                               '{"t":0.9,"event":"clock","branch":2,"clock":1,"loss":"high"}'),
        ["progress.jsonl:2:", "\"loss\" is not a number"])
    bad(tmp, "missing-progress", lambda d: os.remove(os.path.join(d, "progress.jsonl")),
        ["progress.jsonl", "missing"])
    bad(tmp, "empty-decisions", lambda d: open(os.path.join(d, "decisions.jsonl"), "w").close(),
        ["decisions.jsonl", "empty"])

    # a job still writing: an unterminated last line is left out, not an error
    d = fresh_copy(tmp, "live")
    with open(os.path.join(d, "progress.jsonl"), "a") as f:
        f.write('{"t":14.1,"event":"clo')
    rc, out, err = run(d)
    check(rc == 0, f"an unterminated last line (a live job) is left out (rc {rc}: {err.strip()})")


def main():
    if not os.access(SCRIPT, os.X_OK):
        check(False, f"{SCRIPT} is executable")
        return 1
    with tempfile.TemporaryDirectory(prefix="mlt-plot-") as tmp:
        test_picture(tmp)
        test_reading()
        test_rmse(tmp)
        test_bad_input(tmp)
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
