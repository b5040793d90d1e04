"""`python -m demo`: run the demo (demo.run) until Ctrl-C."""

import sys

from demo.run import main

sys.exit(main())
