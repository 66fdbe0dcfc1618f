"""Test-wide settings.

The models in the tests are tiny: one thread runs them fastest, and on a shared 2-core
machine torch's default of two threads can slow them down a hundredfold.
"""

import torch

torch.set_num_threads(1)
