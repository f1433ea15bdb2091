#!/bin/sh
# The HTTP server over real sockets on loopback: see tests/server/test_server.py.
exec python3 tests/server/test_server.py
