"""`python -m explain IMAGE ...` (the line exported `record.json` files hold).

The command line needs the model registry, and `models` sits above `explain` (it imports the
engine, never the reverse): so this file only hands over to models.cli by name. Importing
`explain` or any of its modules never loads `models`.
"""
import importlib
import sys

sys.exit(importlib.import_module("models.cli").explain_main())
