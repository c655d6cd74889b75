"""Model workers: each loaded model version runs in its own process, so a model that crashes, aborts or
exhausts its memory takes down nothing but itself.

The server keeps the control side (`pool`, `model_worker`, `process`): it scans an archive, starts a worker,
restarts a dead one with backoff and gives up on one that keeps dying. The worker side (`main`) loads the
model exactly as the server would and runs the ordinary `CaptureEngine`. Calls cross as small pickled
messages over a socket pair; arrays above a few kilobytes cross through shared memory (`transport`).
"""
