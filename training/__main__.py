"""``python -m training MODEL [options]`` is ``cnn train MODEL [options]``.

It exists for torchrun, which starts modules, not console scripts:
``torchrun --nproc-per-node 2 -m training lenet5 --subset 2000``.
"""

import sys

from cnn.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
