"""python-api's entry point: the function's own modules live next to this script (-I leaves
its directory off sys.path); its dependencies are the wheels of profiles/python-api.requirements.txt,
installed by the build into /usr/local/lib/python3.11/dist-packages (on sys.path through the
site module).
"""
import sys

sys.path.insert(0, __file__.rpartition("/")[0])

import api  # noqa: E402

api.main()
