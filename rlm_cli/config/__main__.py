"""`python -m rlm_cli.config --example > configs/example.yaml`: write the example config file."""

import sys

from rlm_cli.config.files import example_yaml

if sys.argv[1:] != ["--example"]:
    sys.exit("usage: python -m rlm_cli.config --example > configs/example.yaml")
sys.stdout.write(example_yaml())
