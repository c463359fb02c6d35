"""Low-light image enhancement: everything of the task in one subpackage.

``data`` (the degradation family, photo patches, folders, LOL pairs), ``nn`` (GDC, UGDC, DCE-Net), ``losses``
(restoration, Zero-DCE's non-reference losses), ``methods`` (TML, Zero-DCE, gamma baselines), ``evaluation`` (the
PSNR/SSIM callback), ``enhance`` (a trained run on user images) and ``task`` (what the trainer, CLI and app ask of
a low-light run). The same layering holds inside as outside: data, nn, losses and methods never import the engine.
"""
