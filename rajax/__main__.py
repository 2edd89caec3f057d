import sys

from rajax.cli import main

sys.exit(main())
