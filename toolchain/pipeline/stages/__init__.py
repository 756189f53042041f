"""The build's stages, in the order of the method. Each module has one entry point, ``run(ctx)``."""
