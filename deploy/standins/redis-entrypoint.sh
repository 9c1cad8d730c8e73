#!/bin/sh
# As the official redis image: `redis-server ...` runs as the redis user with protected
# mode off (the official image compiles that default in); anything else runs as given.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$@" --protected-mode no
fi
exec "$@"
