#!/bin/sh
# Picks the kernel headers bcc compiles against, then runs the collector with the arguments.
# The node's own headers (hostPath /lib/modules and /usr/src mounted at the same paths) match
# its kernel exactly; without them the image's Debian headers are used (bcc programs here
# read tracepoint arguments and BTF-described data, not hand-written struct offsets).
set -eu
release=$(uname -r)
if [ -z "${BCC_KERNEL_SOURCE:-}" ] && [ ! -e "/lib/modules/$release/build/Makefile" ]; then
  echo "collector-entrypoint: no headers for $release under /lib/modules; using the image's" \
       "($(cat /opt/kernel-headers/include/config/kernel.release 2>/dev/null || echo unknown))" >&2
  export BCC_KERNEL_SOURCE=/opt/kernel-headers
fi
exec /opt/collector/bin/collector "$@"
