#!/usr/bin/python3
"""run.py - runs one Python test file for meson test:

    run.py [--needs numpy,torch] [--needs-session] test_x.py

Exits 77 (meson's SKIP) with the reason on stdout when a module it needs is
missing or libmltuner has no worker session yet; else runs the file with
pytest (python3-pytest) or, without pytest, with unittest, and exits with
their status. Run it with /usr/bin/python3 (Debian's numpy and torch)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv):
    needs, session, files = [], False, []
    it = iter(argv)
    for a in it:
        if a == "--needs":
            needs += next(it).split(",")
        elif a == "--needs-session":
            session = True
        else:
            files.append(a)
    for m in needs:
        try:
            __import__(m)
        except ImportError:
            print("SKIP: the Python module %s is missing (Debian: apt-get install "
                  "--no-install-recommends python3-%s; scripts/test installs it)" % (m, m))
            return 77
    import harness  # noqa: F401  (puts python/ on sys.path)
    import mltuner._lib
    try:
        lib = mltuner._lib.lib()
    except mltuner._lib.LibraryNotFound as e:
        print("FAIL: %s" % e)
        return 1
    if session and not lib.has_session:
        print("SKIP: %s has no worker session (mlt_session_*) yet" % lib.path)
        return 77
    try:
        import pytest
    except ImportError:
        pytest = None
    if pytest is not None:
        return pytest.main(["-q", "-rs", "-p", "no:cacheprovider"] + files)
    import unittest
    print("pytest is missing (python3-pytest): running with unittest")
    suite = unittest.defaultTestLoader.loadTestsFromNames(
        [os.path.splitext(os.path.basename(f))[0] for f in files])
    r = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if r.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
