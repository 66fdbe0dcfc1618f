"""``rnnkit serve``: an HTTP API with dynamic batching and a web page over a checkpoint.

- :mod:`rnnkit.serve.batcher`: gathers concurrent requests into batches for one worker;
- :mod:`rnnkit.serve.translator`: what the worker runs (translations, attention, gates);
- :mod:`rnnkit.serve.app`: the FastAPI app (endpoints, limits, errors, metrics);
- :mod:`rnnkit.serve.page`: the page at ``GET /``;
- :mod:`rnnkit.serve.command`: the ``rnnkit serve`` command (uvicorn, signals);
- :mod:`rnnkit.serve.launch`: that command as a child process (scripts, benchmarks, tests).

Importing this package imports neither FastAPI nor torch.
"""

MAX_BEAM = 32  # the widest beam a request (or ``rnnkit serve --beam``) may ask for
