import sys

from shortcore.cli import main

sys.exit(main())
