"""Tests of semcontrib.engine (a package, so that basenames such as test_run.py may repeat elsewhere)."""
