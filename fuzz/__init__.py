"""Fuzz harness for every ckconv parser that reads untrusted bytes.

- :mod:`fuzz.mutate`   AFL-style byte mutations, driven by hypothesis or a seeded RNG
- :mod:`fuzz.targets`  one function per parser: bytes in, only ``CkconvError`` may come out
- :mod:`fuzz.harness`  runs one case under a 2 s alarm and a memory ceiling, reports findings
                       (a case stuck in C code, out of the alarm's reach, is ended by a 60 s
                       watchdog that leaves its input in ``fuzz/findings/<target>-<pid>-running``)
- :mod:`fuzz.run`      the long on-demand campaign (atheris when installed)

The bounded CI campaign is ``tests/test_fuzz.py``.
"""
