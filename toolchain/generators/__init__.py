"""Dual-domain generators: SemanticStyleGAN in pure PyTorch (G_real, G_avatar), official checkpoint loading,
GAN training and avatar finetuning with the colour-matching loss. See docs/semantic-stylegan-spec.md."""
