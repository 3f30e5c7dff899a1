"""``python -m training MODEL [options]`` is ``cnn train MODEL [options]``.

It exists for torchrun, which starts modules, not console scripts:
``torchrun --nproc-per-node 2 -m training lenet5 --subset 2000``.
"""

import argparse
import sys

from training.options import add_train_parser, config_from_args
from training.train import train

parser = argparse.ArgumentParser(prog="python -m training")
add_train_parser(parser.add_subparsers(dest="command", required=True))
train(config_from_args(parser.parse_args(["train", *sys.argv[1:]])))
