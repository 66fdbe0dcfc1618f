"""Run Joey NMT 2.3.0 on torch 2.13 (used by bench/compare_joeynmt.py, in Joey's own venv).

Joey builds ``ReduceLROnPlateau(..., verbose=False)``; torch 2.13 removed ``verbose``,
and Joey refuses to train without a scheduler. This drops the argument, then hands the
command line to Joey's own entry point:

    JOEY_VENV/bin/python bench/joey_launcher.py train CONFIG --skip-test
"""

import sys

import torch

_init = torch.optim.lr_scheduler.ReduceLROnPlateau.__init__


def _without_verbose(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.pop("verbose", None)
    _init(self, *args, **kwargs)


torch.optim.lr_scheduler.ReduceLROnPlateau.__init__ = _without_verbose  # type: ignore[method-assign]

try:
    from joeynmt.__main__ import main  # noqa: E402  (after the patch)
except ModuleNotFoundError:
    sys.exit("joey_launcher.py: joeynmt is not installed here; bench/compare_joeynmt.sh runs "
             "this in Joey NMT's own venv (it installs it)")  # fmt: skip

if __name__ == "__main__":
    sys.argv[0] = "joeynmt"
    main()
