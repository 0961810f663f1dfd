import sys

from kata_top.cli import main

sys.exit(main())
