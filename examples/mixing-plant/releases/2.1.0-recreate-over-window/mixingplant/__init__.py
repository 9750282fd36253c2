"""mixingplant: batch records, recipes and a material ledger for a paint and coatings plant."""

import sys

# Release directories are shipped as hashed artifacts: never write bytecode into them.
sys.dont_write_bytecode = True

VERSION = "2.1.0"
