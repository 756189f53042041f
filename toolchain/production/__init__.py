"""Paired data production (paper Sec. 3.2): invert engine renders into G_avatar's W+ space, synthesise
realistic faces with G_real, add semantic augmentation, and write a resumable sharded paired dataset.

Modules: ``perceptual`` (LPIPS or a named weight-free fallback), ``init_latent`` (w_mean and the
modified w̃_mean for may-be-absent assets), ``inversion`` (batched, per-sample Adam with early stop),
``augment`` (part-wise latent noise; ``strengths`` reads its ``PART=λ`` form), ``pairs`` (orchestration + resume), ``figures`` (paper Fig. 5).
"""
