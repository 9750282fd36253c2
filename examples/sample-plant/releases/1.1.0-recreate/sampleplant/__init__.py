"""sampleplant: a small multi-tenant manufacturing web app."""

import sys

# Release directories are hashed as artifacts: never write bytecode into them.
sys.dont_write_bytecode = True

VERSION = "1.1.0"
