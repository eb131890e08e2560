import sys

from nasspeech.cli.main import main

sys.exit(main())
