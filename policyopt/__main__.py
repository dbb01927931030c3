"""``python -m policyopt ARGS``: the ``policyopt`` command line (:func:`policyopt.cli.main`)."""

from policyopt.cli import main

raise SystemExit(main())
