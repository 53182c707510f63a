"""Torch's CPU threads around small models."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def one_torch_thread():
    """Torch on one thread inside, its thread count restored after: small models (the
    driver's Silero and speech embedding, the sync model) spend more CPU than they save
    on a second thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
