import sys

from bench.analysis.run import main

sys.exit(main())
