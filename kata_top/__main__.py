import sys

from kata_top.cli.main import main

sys.exit(main())
