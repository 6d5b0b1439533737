import sys

from bench.viewer.run import main

sys.exit(main())
