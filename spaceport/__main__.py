import sys

from spaceport.cli import main

sys.exit(main())
