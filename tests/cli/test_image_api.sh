#!/bin/sh
# The image endpoints of `simularity serve --image-model` over real sockets: see tests/server/test_image_api.py.
exec python3 tests/server/test_image_api.py
