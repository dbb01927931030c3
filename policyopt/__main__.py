"""``python -m policyopt``: the command line (:func:`policyopt.cli.main`)."""

import sys

from policyopt.cli import main

sys.exit(main())
