"""@NAME@'s entry point (the profile's [init] argv): puts the function's own modules on the path
(-I leaves the script's directory off it) and runs the server in app.py. The function itself
is in app.py, a module, so its bytecode is compiled at build time: Python never caches the
script it runs, only the modules it imports.
"""
import sys

sys.path.insert(0, __file__.rpartition("/")[0])

import app  # noqa: E402

app.main()
