#!/bin/sh
# The native story API over real sockets: see tests/server/test_story_api.py.
exec python3 tests/server/test_story_api.py
