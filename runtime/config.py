"""The engine's tuning knobs, in one place: each says what it trades, and its unit.

A module reads its knob as its own global (``from runtime.config import X``), so a
test changes a knob with ``monkeypatch.setattr(module, "X", value)`` on the module
that reads it. These knobs are read by Python code (plan-time choices and how a
call is cut into chunks and jobs), never inside an ``@njit`` kernel.

Knobs that ``@njit`` kernels read stay beside their kernels, because numba freezes
a global into the compiled code and its cache watches only the kernel's own source
file (a change here would leave stale cached kernels): ``kernels/gemm.py`` AHEAD,
``kernels/winograd_gemm.py`` PANELS_PER_JOB and AHEAD, ``kernels/winograd.py`` BLOCK,
``kernels/unary.py`` BLOCK, ``kernels/reduce.py`` BLOCK. Tile shapes (MR, NR, WIDTH)
are the micro-kernels' register layout, not knobs.
"""

from __future__ import annotations

# --- plans (runtime/engine.py)
# Input shapes whose plans and step buffers a session keeps: memory (each plan keeps
# its buffers, per thread) against re-planning when a caller cycles through more
# batch sizes than this. Unit: plans; the oldest is dropped first.
MAX_PLANS = 16

# --- algorithm choice (runtime/kernel_table.py)
# Channels in (C*s*s) and out from which a conv runs as Winograd: below this its a*a
# products do not fill the micro-kernel's panels of 32 output channels
# (``kernels/winograd_gemm.py``) and im2col + GEMM is faster. Unit: channels.
WINOGRAD_MIN_CHANNELS = 32
# A Winograd call with fewer F(4x4) tiles than this uses F(2x2, 3x3): its weights are
# 16/9 of the kernel's against F(4x4)'s 36/9, and a small batch is bound by reading
# them (AlexNet batch 1: 18.7 ms against 20.0). Unit: tiles of the default size.
WINOGRAD_SMALL_TILES = 64

# --- Winograd convolution (kernels/winograd.py)
# Floats in each of V and Z per chunk of images (8 MiB): a chunk's V and Z stay in the
# last-level cache between the three steps. AlexNet at batch 32, two threads, conv1 to
# conv5: 32.0/30.1/19.7/27.8/20.8 ms in chunks of 8 MiB, 56.7/43.6/24.8/33.3/25.8 in
# chunks of 128 MiB (one chunk); 4 MiB and 2 MiB were slower again (conv2: 35.1, 35.7).
# Unit: float32 values.
WINOGRAD_CHUNK_FLOATS = 1 << 21
# The output transform's work per pass over tiles (256 KiB): a pass's tiles stay in
# the core's cache while the transform, bias, activation and pool run over them.
# Unit: float32 values.
WINOGRAD_OUT_PASS_FLOATS = 1 << 16

# --- im2col convolution (kernels/conv.py)
# Columns per im2col chunk (128 MiB): bounds the scratch memory against the number of
# GEMM calls (more, smaller chunks). Unit: float32 values.
IM2COL_CHUNK_FLOATS = 1 << 25
# The direct conv (kernels/conv.ConvDirect) reads its tiles' vectors in place, 16
# outputs of a row or of consecutive positions of the padded plane, and computes the
# lanes that fall past a row's end too; im2col's panels pack just the outputs but
# fill a panel per tile (2 to 4 times the GEMM's time on small planes). The direct
# conv runs while its lanes are at most this many times im2col's. Unit: a ratio.
DIRECT_MAX_LANES = 1.5
# A direct conv job runs its row blocks one after another over a run of tiles, each
# block's weights staying in L1 while the run's input vectors stay in L2 (and each
# block writes 8 output planes at a time, not all M: a stem's 64 planes of 112 x 112
# outrun the core's prefetch streams). A run reads at most this many input floats
# (256 KiB: run x taps x 32 lanes). Unit: float32 values.
DIRECT_RUN_FLOATS = 1 << 16

# --- GEMM (kernels/gemm.py)
# Jobs per thread that a product is cut into: more jobs balance uneven threads, fewer
# pay less per-job overhead and re-read less of A. Unit: jobs per numba thread.
GEMM_JOBS_PER_THREAD = 4
# Products with fewer rows than this run row by row (``gemm_f32_1x64_row``): a tile of MR rows
# would compute mostly padding. Unit: rows of A.
GEMM_FEW_ROWS = 3

# --- compiled chain programs (runtime/compiled.py)
# Working memory per thread for a group's activations, padding and accumulators
# (1 MiB): it must stay in the core's cache; a plan needing more runs step by step.
# Unit: float32 values.
PROGRAM_WORKSPACE_FLOATS = 1 << 18
# Weights a program may hold (16 MiB): they are read again for every group of images,
# so a larger network is faster step by step. Unit: float32 values.
PROGRAM_WEIGHTS_FLOATS = 1 << 22
# Batches are cut finer than one chunk a thread, so a slow thread does not hold the
# call up (``kernels/chain.run_images``). Unit: chunks per numba thread.
PROGRAM_CHUNKS_PER_THREAD = 8
# Images a program runs op by op together: a Gemm reads its weights once for them,
# against a group's activations having to fit the workspace (fewer when they do not).
# At most ``kernels/gemm.MR``: a group's vectors are one row block of the GEMM.
# Unit: images.
PROGRAM_IMAGES_PER_GROUP = 4
