"""The tools people run, over the engine: the ``cnn`` command line (``cli``) and what
it drives: backend comparison (``compare``), the speed benchmark (``bench``),
node-by-node bisection (``bisect``), model summaries (``summary``) and image loading
for ``cnn predict`` (``images``). Uses ``runtime``, ``dataio`` and, lazily for
``train`` and ``export``, ``training``."""
