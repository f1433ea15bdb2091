#!/bin/sh
# The LLooM and mixing endpoints over real sockets: see tests/server/test_loom_api.py.
exec python3 tests/server/test_loom_api.py
