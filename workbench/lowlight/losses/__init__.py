"""Low-light losses: the restoration loss (smooth L1 + SSIM) and Zero-DCE's four non-reference losses."""
