"""The photo-like proxy domain: the built-in engines' attributes drawn in a photo-like style.

``photo_style.render_photo`` draws one image; ``eval_set`` writes and reads evaluation-set folders
(photo-proxy sets and users' own labelled photos) and guards training code against reading them.
"""
from .eval_set import (EvalSet, ProxySetSummary, assert_not_eval_set, load_eval_set, proxy_vector,
                       write_proxy_set)
from .photo_style import render_photo

__all__ = ["EvalSet", "ProxySetSummary", "assert_not_eval_set", "load_eval_set", "proxy_vector", "render_photo",
           "write_proxy_set"]
