"""A target module that calls sys.exit(0) while it is imported: verify must report it, never exit 0."""

import sys

sys.exit(0)
