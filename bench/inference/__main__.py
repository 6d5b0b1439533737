import sys

from bench.inference.run import main

sys.exit(main())
