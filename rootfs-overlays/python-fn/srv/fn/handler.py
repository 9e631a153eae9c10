"""python-fn's entry point: counts what the interpreter compiles from source while the function
starts (an audit hook sees every compile(); loading a cached .pyc is not one), then runs the
function in app.py.
"""
import sys

compiled = []


def _audit(event, args):
    # Modules compiled from a source file; exec()/eval() of generated code ("<string>", as
    # namedtuple and dataclasses do) is not an import.
    if event == "compile" and len(args) > 1 and isinstance(args[1], str):
        if not args[1].startswith("<"):
            compiled.append(args[1])


sys.addaudithook(_audit)
# -I leaves the script's directory off sys.path: the function's modules live next to it.
sys.path.insert(0, __file__.rpartition("/")[0])

import app  # noqa: E402  (after the hook, so its own import is counted)

app.main(compiled)
